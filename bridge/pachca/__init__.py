"""The Pachca side: webhook events relayed into the forum, the bot's commands, the outbox
worker and what each of its job kinds does, pacing under Pachca's rate limits, missed-webhook
recovery, and the API client built from the live config."""
