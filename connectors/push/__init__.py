"""What a push needs that knows nothing of storage: senders and their tokens (senders), the checks
of an upload before it lands (uploads), and the push client's HTTP calls (client)."""
