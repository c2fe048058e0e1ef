"""The durable spool and the queue manager. Owns every file under data/queue.

Must not import hatoba.net."""
