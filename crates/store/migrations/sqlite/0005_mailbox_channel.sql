-- Mailbox items delivered through Firebase live in the Realtime Database; the row here is
-- their index (empty payload), so the cleanup job can find and delete them when they expire.
ALTER TABLE mailbox_items ADD COLUMN channel TEXT NOT NULL DEFAULT 'builtin';
CREATE INDEX mailbox_items_channel_expires ON mailbox_items (channel, expires_at);
