"""deepworks.cli.embed"""
