"""A worker loads what its listeners use: every worker process is one more copy
of each library it imports. The web admin (jinja2) and cryptography (the CA's
renewal, ACME, signed profiles, APOP's secret box) stay out of a worker that
does not use them; a fresh interpreter shows what a started worker holds."""

import subprocess
import sys
import textwrap

WORKER = textwrap.dedent("""
    import asyncio, dataclasses, sys
    from hatoba.config.load import load_config
    from hatoba.net.server import Server

    config = load_config(sys.argv[1])
    config = dataclasses.replace(config, listeners={
        name: dataclasses.replace(lc, host="127.0.0.1", port=0) for name, lc in config.listeners.items()})

    async def main():
        server = Server(config, forward=lambda message: None)  # a worker other than the first
        await server.start()
        loaded = [name for name in ("cryptography", "jinja2", "hatoba.web.admin.app") if name in sys.modules]
        await server.stop()
        print(" ".join(loaded) or "-")

    asyncio.run(main())
""")


def test_a_worker_other_than_the_first_loads_neither_cryptography_nor_the_web_admin(hatoba_home):
    done = subprocess.run([sys.executable, "-c", WORKER, str(hatoba_home.config_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "-", done.stdout
