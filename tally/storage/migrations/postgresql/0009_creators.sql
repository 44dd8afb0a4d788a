-- Issue 20: who made each token and each invitation (as sqlite/0006_creators.sql), so
-- that removing a member can revoke the tokens they made and cancel the invitations they
-- sent, and the tokens page can say who made each. NULL: made by the operator (CLI,
-- bootstrap), the management API, or before this migration.
ALTER TABLE tokens ADD COLUMN created_by BIGINT REFERENCES accounts(id) ON DELETE SET NULL;
ALTER TABLE one_time_tokens ADD COLUMN created_by BIGINT REFERENCES accounts(id) ON DELETE SET NULL;
CREATE INDEX tokens_creator ON tokens (created_by);
