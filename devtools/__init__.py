"""Developer tools: local stand-ins for external services, used by the offline demo and the tests."""
