"""Running the service: config reload, scheduled housekeeping, the outbox admin views, logging
and metrics."""
