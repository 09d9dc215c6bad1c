"""``faceid serve`` and ``faceid keys``: the REST server and its API keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from faceid.cli._common import (
    DetectorOpt,
    GalleryOpt,
    JsonOpt,
    app,
    check_detector,
    cli_errors,
    err,
    finite,
    keys_app,
    opened_gallery,
    options,
    say,
)
from faceid.errors import FaceIDError
from faceid.server.settings import Settings

# -- the server and its keys --------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="What the key is for (phone-app, dashboard...).")],
    read_only: Annotated[bool, typer.Option("--read-only", help="May identify and list, not change anything.")] = False,
    gallery: GalleryOpt = None,
) -> None:
    """Make an API key; it is printed once, on its own last line (only its hash is kept)."""
    from faceid.apikeys import ADMIN, READ_ONLY, ApiKeys

    with cli_errors(), opened_gallery(gallery) as g:
        key, token = ApiKeys(g).create(name, READ_ONLY if read_only else ADMIN)
    err(f"created {key.scope} key {key.name!r}; it is shown once, keep it now:")
    typer.echo(token)


@keys_app.command("list")
def keys_list(gallery: GalleryOpt = None, as_json: JsonOpt = False) -> None:
    """List the API keys: name, scope, created, last used (never the keys themselves)."""
    from faceid.apikeys import ApiKeys

    with cli_errors(), opened_gallery(gallery, create=False) as g:
        keys = ApiKeys(g).list()
    for k in keys:
        if as_json:
            typer.echo(json.dumps(k.to_json(), ensure_ascii=False))
        else:
            say(f"{k.name}\t{k.scope}\tcreated {k.created_at}\tlast used {k.last_used or 'never'}")
    if not as_json and not keys:
        err("no keys: `faceid keys create NAME` makes one")


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name.")], gallery: GalleryOpt = None) -> None:
    """Revoke an API key; a running server refuses it from the next request."""
    from faceid.apikeys import ApiKeys

    with cli_errors(), opened_gallery(gallery, create=False) as g:
        ApiKeys(g).revoke(name)
    say(f"revoked {name}")


_SERVE = Settings()  # the server's defaults, shown by `faceid serve --help`
_SERVE_BODY_MB = _SERVE.max_body_bytes / 2**20


@app.command()
def serve(
    gallery: GalleryOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    insecure_no_auth: Annotated[
        bool, typer.Option("--insecure-no-auth", help="Answer without API keys, even on a network address.")
    ] = False,
    max_body_mb: Annotated[
        float, typer.Option(min=0.01, max=4096, callback=finite, help="Largest request body, in MB.")
    ] = _SERVE_BODY_MB,
    max_megapixels: Annotated[
        float, typer.Option(min=0.01, max=1000, callback=finite, help="Largest image decoded, in megapixels.")
    ] = _SERVE.max_pixels / 1e6,
    max_files: Annotated[
        int, typer.Option(min=1, max=1000, help="Most photos in one enrolment request.")
    ] = _SERVE.max_files,
    request_timeout: Annotated[
        float,
        typer.Option(
            min=0.1, max=86400, callback=finite, help="Seconds a request may take, waiting and upload included."
        ),
    ] = _SERVE.request_timeout,
    read_timeout: Annotated[
        float,
        typer.Option(
            min=0.1, max=3600, callback=finite, help="Seconds an upload may send nothing before it is cut off."
        ),
    ] = _SERVE.read_timeout,
    max_uploads: Annotated[
        int, typer.Option(min=1, max=1024, help="Requests with a body handled at once; more wait their turn.")
    ] = _SERVE.max_uploads,
    key_concurrency: Annotated[
        int, typer.Option(min=1, max=1024, help="Requests of one API key handled at once; more wait their turn.")
    ] = _SERVE.key_concurrency,
    key_rate: Annotated[
        float,
        typer.Option(min=0.01, max=100000, callback=finite, help="Requests per second one API key may start."),
    ] = _SERVE.key_rate,
    key_burst: Annotated[
        int, typer.Option(min=1, max=100000, help="Requests one API key may start at once after a pause.")
    ] = _SERVE.key_burst,
    memory_mb: Annotated[
        int, typer.Option(min=64, max=1048576, help="Memory for decoded images, in MB; more work waits.")
    ] = _SERVE.memory_mb,
    ssl_certfile: Annotated[
        Optional[Path], typer.Option(exists=True, dir_okay=False, help="TLS certificate (PEM): serve HTTPS.")
    ] = None,
    ssl_keyfile: Annotated[
        Optional[Path], typer.Option(exists=True, dir_okay=False, help="TLS private key (PEM) of the certificate.")
    ] = None,
    batch_wait_ms: Annotated[
        float,
        typer.Option(
            min=0, max=10000, callback=finite, help="Milliseconds to wait for other identify requests to batch with."
        ),
    ] = _SERVE.batch_wait_ms,
    max_batch: Annotated[
        int, typer.Option(min=1, max=1024, help="Most images detected and embedded together.")
    ] = _SERVE.max_batch,
    batch_workers: Annotated[
        int, typer.Option(min=1, max=16, help="Batches detected and embedded at once, over the same models.")
    ] = _SERVE.batch_workers,
    model: Annotated[
        Optional[str], typer.Option(help="Embedding model, for a new gallery [default: faceid's].")
    ] = None,
    detector: DetectorOpt = None,
    compat: Annotated[
        bool,
        typer.Option("--compat/--no-compat", help="Also answer CompreFace and DeepStack clients (docs/compat.md)."),
    ] = _SERVE.compat,
    remember_unknown: Annotated[
        bool, typer.Option("--remember-unknown", help="Keep every request's unknown faces for review.")
    ] = _SERVE.remember_unknown,
    max_video_mb: Annotated[
        float, typer.Option(min=0.01, help="Largest video on POST /v1/identify, in MB.")
    ] = _SERVE.max_video_bytes / 2**20,
    max_video_seconds: Annotated[
        float, typer.Option(min=0.1, help="Longest video on POST /v1/identify, in seconds.")
    ] = _SERVE.max_video_seconds,
) -> None:
    """Serve the REST API and the web page, with the models loaded once (Ctrl-C or SIGTERM stops it cleanly)."""
    from faceid.apikeys import ApiKeys
    from faceid.enroll import enrolment_key
    from faceid.gallery import open_gallery
    from faceid.server import require_server_packages
    from faceid.server import serve as run_server
    from faceid.server.settings import is_loopback

    with cli_errors():
        require_server_packages()
        path = gallery if gallery is not None else None
        with open_gallery(path, timeout=options["timeout"]) as g:
            keys = ApiKeys(g).count()
            where = g.path
            # an unknown model or detector, or not the gallery's: refused before serving
            enrolment_key(g, model=model, detector=check_detector(detector))
        loopback = is_loopback(host)
        if not loopback and keys == 0 and not insecure_no_auth:
            raise FaceIDError(
                f"refusing to serve on {host} without API keys: make one with `faceid keys create NAME`, "
                "or pass --insecure-no-auth to answer anyone who can reach this address"
            )
        settings = Settings(
            auth=not insecure_no_auth,
            loopback=loopback,
            max_body_bytes=int(max_body_mb * 2**20),
            max_pixels=int(max_megapixels * 1_000_000),
            max_files=max_files,
            request_timeout=request_timeout,
            read_timeout=read_timeout,
            max_uploads=max_uploads,
            key_concurrency=key_concurrency,
            key_rate=key_rate,
            key_burst=key_burst,
            memory_mb=memory_mb,
            batch_wait_ms=batch_wait_ms,
            max_batch=max_batch,
            batch_workers=batch_workers,
            compat=compat,
            remember_unknown=remember_unknown,
            max_video_bytes=int(max_video_mb * 2**20),
            max_video_seconds=max_video_seconds,
        )
        if insecure_no_auth:
            access = "no keys needed (--insecure-no-auth)"
        elif keys:
            access = f"API key needed ({keys} key{'s' if keys != 1 else ''})"
        else:
            access = "no keys yet: open to this machine only; `faceid keys create NAME` to require one"
        shown = f"[{host}]" if ":" in host else host
        if (ssl_certfile is None) != (ssl_keyfile is None):
            raise FaceIDError("--ssl-certfile and --ssl-keyfile go together: give both, or neither")
        tls = {"ssl_certfile": str(ssl_certfile), "ssl_keyfile": str(ssl_keyfile)} if ssl_certfile else {}
        scheme = "https" if ssl_certfile else "http"
        err(f"faceid: serving {where} at {scheme}://{shown}:{port}/ ({access}); loading the models...")
        run_server(where, host=host, port=port, settings=settings, model=model, detector=detector, **tls)
