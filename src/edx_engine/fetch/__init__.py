"""Fetching edX deliveries from S3 (or any S3-compatible store)."""
