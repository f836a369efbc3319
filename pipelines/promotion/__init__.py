"""Promotion of approved model versions through dev, staging and prod: config, flow, deployers."""
