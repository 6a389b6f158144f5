"""R4 Subscriptions: matching committed writes into the outbox, and rest-hook delivery from it."""
