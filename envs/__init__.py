"""Gymnasium environments of coral. Importing this package registers them."""
