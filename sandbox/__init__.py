"""The Pachca sandbox: an imitation of the parts of Pachca's API the bridge uses, which signs
its webhooks like Pachca, with a page where a person acts in "Pachca". It runs under
`pachca-bridge demo` (demo.py) and is the tests' fake Pachca.

- pachca.py: the API, the state, and what people do (`PachcaSandbox`);
- storage.py: the upload bucket (`POST /uploads`, the direct upload, download links);
- outgoing.py: signed webhooks to the bot's URL; webhooks.py: their bodies;
- faults.py: recorded requests and scripted failures; spec.py: Pachca's OpenAPI and validation;
- page.py and static/: the page.
"""
