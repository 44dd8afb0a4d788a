"""The website: accounts and the dashboard, served beside the API (never on /v2)."""
