"""Translators between the hub (Anthropic Messages) and Amazon Bedrock's wire formats."""
