"""kubext operator: kopf operator for the WebApp and Database CRDs."""
