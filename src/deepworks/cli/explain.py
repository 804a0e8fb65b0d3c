"""deepworks.cli.explain"""
