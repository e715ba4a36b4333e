"""The web client's static files: ``index.html`` and ``assets/`` (plain CSS and ES modules, no
build step). ``handlers/web.py`` reads them once at start-up and serves them."""
