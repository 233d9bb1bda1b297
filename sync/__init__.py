"""Between devices: identity and pairing, mTLS, change exchange, bundle transfer, discovery."""
