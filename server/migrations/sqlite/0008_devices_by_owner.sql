-- A contact's profile (PROTOCOL.md §15.6) lists the devices it owns:
-- found by owner, not by reading every device.
CREATE INDEX devices_by_owner ON devices (owner) WHERE owner IS NOT NULL;
