"""``btms-gateway web ...``: make the hashes the config holds, so no plain
password or token ever needs to be written into a file."""

from __future__ import annotations

import sys

import click

from .auth import hash_password, new_token


@click.group("web")
def web_group() -> None:
    """Web dashboard helpers: password hashes and API tokens for [plugins.web]."""


@web_group.command("hash-password")
@click.option("--user", default="admin", show_default=True, help="User name for the config line.")
@click.option(
    "--stdin",
    "from_stdin",
    is_flag=True,
    help="Read the password from the first line of standard input (for scripts).",
)
def hash_password_command(user: str, from_stdin: bool) -> None:
    """Print a `users.NAME = "scrypt$..."` line for [plugins.web]."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise click.UsageError("the password is empty")
    click.echo(f'users.{user} = "{hash_password(password)}"')


@web_group.command("new-token")
@click.option("--name", default="scada", show_default=True, help="A name for the token's owner.")
def new_token_command(name: str) -> None:
    """Make an API bearer token: the token is shown once (give it to the client),
    the config gets only its hash."""
    token, digest = new_token()
    click.echo(f"token (give to the client, shown once): {token}", err=True)
    click.echo(f'tokens.{name} = "{digest}"')
