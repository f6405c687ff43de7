"""The web plugin: a live dashboard, a JSON REST API with an OpenAPI
description, and Prometheus metrics, served by aiohttp on the gateway's loop."""
