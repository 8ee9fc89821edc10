"""Pulumi components of the confidential-vault platform."""
