"""deepworks.cli.audit"""
