"""What runs in production: the Faust worker (app) and what it is made of (outbox, processed offsets, health, metrics,
shutdown), the webhook gateway, the notifier, the topics and their route table, settings, the producer SDK."""
