"""The HTTP side: a plain ASGI application (`create_app`)."""
