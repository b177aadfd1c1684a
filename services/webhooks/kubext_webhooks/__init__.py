"""kubext webhooks: validating, mutating and CRD conversion admission webhooks."""
