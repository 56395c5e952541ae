"""Deployment artefacts (deploy/) agree with the code."""
