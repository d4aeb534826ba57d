from lablease.cli import app

app()
