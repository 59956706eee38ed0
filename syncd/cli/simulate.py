"""``syncd simulate``: a provider simulator on 127.0.0.1."""

from __future__ import annotations

import click


@click.command()
@click.argument("provider", type=click.Choice(["brevo", "mailchimp"]))
@click.option("--port", type=int, default=0, help="Port on 127.0.0.1 [default: a free one].")
@click.option("--api-key", default=None, help="The API key the simulator accepts.")
def simulate(provider: str, port: int, api_key: str | None) -> None:
    """Run a provider simulator on 127.0.0.1, to try a config without real accounts.

    \b
    Besides the provider's API, each simulator has an admin API under /_sim (same API key) to
    play what happens on the provider's side:
    Brevo (header api-key):
      PUT  /_sim/account  {"perListUnsubscription": true}   the per-list unsubscription feature
      POST /_sim/contacts/EMAIL/unsubscribe  {"listId": 12}  the contact's own unsubscribe click
      (the account-wide block is the real API's: PUT /v3/contacts/EMAIL {"emailBlacklisted": true})
    Mailchimp (Basic auth, any user name):
      POST /_sim/lists/AUDIENCE/members/EMAIL/ACTION, ACTION one of: unsubscribe ({"reason":
      "abuse"} for a complaint), resubscribe, clean, change-email ({"new_email": "..."})
    """
    from connectors.simulators.harness import free_port

    port = port or free_port()
    if provider == "brevo":
        from connectors.simulators.brevo import serve

        key = api_key or "sim-brevo-key"
        click.echo(f"Brevo simulator on http://127.0.0.1:{port}/v3 (api key: {key}); Ctrl-C stops it")
    else:
        from connectors.simulators.mailchimp import serve

        key = api_key or "sim-mailchimp-key-us1"
        click.echo(f"Mailchimp simulator on http://127.0.0.1:{port}/3.0 (api key: {key}); Ctrl-C stops it")
    serve(port, key)
