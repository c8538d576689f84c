"""``tunekit data shapes``: write the synthetic shapes dataset to a folder."""

from __future__ import annotations

import argparse

from tunekit.shapes import ShapesSpec


def add_data_command(sub: argparse._SubParsersAction) -> None:
    """Adds ``tunekit data`` and its subcommands to the CLI."""
    data = sub.add_parser(
        "data", help="make or inspect datasets", description="Make or inspect datasets."
    )
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    p = dsub.add_parser(
        "shapes",
        help="write the synthetic shapes detection dataset (COCO format)",
        description=(
            "Write PNG images of 1-4 coloured squares, circles and triangles with COCO instances "
            "files (annotations/instances_train.json and instances_val.json). The same arguments "
            "always give the same files."
        ),
    )
    d = ShapesSpec()
    p.add_argument("--out", required=True, help="folder to create")
    p.add_argument(
        "--train", type=int, default=d.train, help=f"training images (default {d.train})"
    )
    p.add_argument("--val", type=int, default=d.val, help=f"validation images (default {d.val})")
    p.add_argument(
        "--size", type=int, default=d.size, help=f"image side in pixels (default {d.size})"
    )
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    p.add_argument(
        "--layout",
        choices=("shapes", "coco"),
        default="shapes",
        help="file names: tunekit's (train/, instances_train.json) or COCO 2017's (train2017/, "
        "annotations/instances_train2017.json), which data.name=coco reads (default shapes)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the folder if it exists")
    p.set_defaults(func=cmd_shapes)


def cmd_shapes(args: argparse.Namespace) -> int:
    from tunekit.errors import TunekitError
    from tunekit.outputs import check_output_dir
    from tunekit.shapes import generate_shapes

    check_output_dir(args.out)
    spec = ShapesSpec(train=args.train, val=args.val, size=args.size, seed=args.seed)
    try:
        out = generate_shapes(args.out, spec, overwrite=args.overwrite, layout=args.layout)
    except TunekitError as exc:
        # Name the command-line flag, not the spec field.
        if exc.field and not exc.field.startswith("--"):
            exc.field = f"--{exc.field.replace('_', '-')}"
            raise type(exc)(exc.message, file=exc.file, field=exc.field) from None
        raise
    print(f"wrote {spec.train} training and {spec.val} validation images to {out}")
    return 0
