"""Tests of the Helm chart in deploy/helm/byok and of the container image recipe."""
