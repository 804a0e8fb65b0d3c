"""deepworks.cli.attack"""
