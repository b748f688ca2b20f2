"""The composition root: settings, stores, hubs and gateways put together (``app.py``), and the
``dispatcher`` command (``cli.py``).

The only package that imports the gateways and the simulations: everything below it is built here.
"""
