"""``text4seg app``: a small web page to upload an image, type expressions and see the masks."""

from __future__ import annotations

import argparse
from pathlib import Path

from text4seg.commands._args import add_grid, add_scheme, add_trust

HELP = "serve a web page (127.0.0.1 by default): upload an image, type expressions, get overlays and masks"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model folder (ms-swift loadable)")
    p.add_argument("--adapters", nargs="*", default=None, help="LoRA adapter folders")
    p.add_argument("--model-type", default=None, help="ms-swift model_type (e.g. qwen2_5_vl, llava1_5_hf)")
    p.add_argument("--template", default=None, help="ms-swift template type (default: the model type's)")
    p.add_argument("--sam-checkpoint", type=Path, default=None, help="SAM weights (.pth): enables refinement")
    p.add_argument("--sam-type", default="vit_h", choices=["vit_h", "vit_l", "vit_b"], help="SAM variant")
    p.add_argument("--max-new-tokens", type=int, default=None)
    add_grid(p, extra=" of the answers")
    add_scheme(p, extra=" of the answers")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=7860, help="port (0: any free one; default 7860)")
    add_trust(p)


def app_options(args: argparse.Namespace):
    """The :class:`~text4seg.inference.options.PredictOptions` of an ``app`` command line (its model,
    SAM, budget, grid and scheme; the page asks per request for constrained decoding and refinement)."""
    from text4seg.inference.options import PredictOptions

    return PredictOptions(
        model=args.model,
        adapters=list(args.adapters or []),
        model_type=args.model_type,
        template=args.template,
        sam_checkpoint=args.sam_checkpoint,
        sam_type=args.sam_type,
        max_new_tokens=args.max_new_tokens,
        grid=args.grid,
        scheme=args.scheme,
        trust_remote_code=args.trust_remote_code,
    )


def run(args: argparse.Namespace) -> int:
    from text4seg._lazy import quiet_libraries
    from text4seg.inference.run import make_predictor
    from text4seg.serving.app import Segmenter, check_port, serve

    # everything that can be checked is checked before the model loads (seconds to minutes)
    options = app_options(args).validate()
    check_port(args.host, args.port)
    with quiet_libraries():
        seg = Segmenter(make_predictor(options), options.grid, options.scheme)
    try:
        server = serve(seg, args.host, args.port)
        host, port = server.server_address[:2]
        print(f"text4seg app: http://{host}:{port}/ (Ctrl+C to stop)", flush=True)
        try:
            server.serve_forever()
        finally:
            server.server_close()
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (text4seg.cli turns it into the same)
        pass
    finally:
        seg.close()  # the uploads folder goes with the server
    return 0
