"""``twins show``: the torch and Flax sources side by side, in the terminal or as a site."""

from pathlib import Path

from rich.console import Console
from rich.table import Table

from twins.sidebyside.steps import SourceError
from twins.sidebyside.views import UnknownViewError, get_view, repository_root, views


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "show", help="print an example's torch and Flax sources aligned step by step, "
                     "or write them as a static HTML site")
    parser.add_argument("name", nargs="?",
                        help="example or view name (omit to list them); e.g. mlp, rbm, training")
    parser.add_argument("--width", type=int, metavar="COLUMNS",
                        help="render for this many columns instead of the terminal's width")
    parser.add_argument("--html", metavar="DIR",
                        help="write the static site (index, one page per view, concepts) to DIR")
    parser.add_argument("--parity-json", metavar="PATH",
                        help="with --html: take parity figures from this `twins parity --json` file")
    parser.add_argument("--no-parity", action="store_true",
                        help="with --html and no --parity-json: skip running the parity checks; "
                             "pages then say that the figures are missing")
    parser.add_argument("--concepts-md", metavar="PATH",
                        help="write the concept map (Markdown) to PATH, e.g. docs/concepts.md")
    return parser


def _list_views(console: Console) -> None:
    table = Table("name", "files (torch_impl/ and flax_impl/)", "shows", title="twins show NAME")
    for view in views().values():
        table.add_row(view.name, ", ".join(f"{m}.py" for m in view.modules), view.summary)
    console.print(table)


def run(args) -> int:
    console = Console(width=args.width) if args.width else Console()
    # soft_wrap keeps paths whole, and markup=False prints "[...]" in messages literally.
    errors = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)
    if args.width is not None and args.width < 40:
        errors.print(f"error: --width {args.width} is too narrow; use 40 columns or more")
        return 2
    if args.parity_json and not args.html:
        errors.print("error: --parity-json only applies with --html DIR")
        return 2
    if args.name and (args.html or args.concepts_md):
        errors.print(f"error: the site and the concept map cover every example; omit {args.name!r} "
                     f"with --html or --concepts-md")
        return 2
    try:
        if args.concepts_md:
            from twins.concepts import write_markdown

            write_markdown(Path(args.concepts_md))
            console.print(f"wrote {args.concepts_md}")
        if args.html:
            from twins.sidebyside.site import IncompleteSiteError, ParityFileError, build_site

            try:
                index = build_site(Path(args.html), parity_json=args.parity_json,
                                   run_parity=not args.no_parity, log=console.print)
            except ParityFileError as error:
                errors.print(f"error: {error}")
                return 2
            except IncompleteSiteError as error:
                errors.print(f"error: {error}")
                return 1
            console.print(f"wrote {index}")
        if args.concepts_md or args.html:
            return 0
        if args.name is None:
            _list_views(console)
            return 0
        from twins.sidebyside.terminal import render

        render(get_view(args.name).align(), console, repository_root())
    except (UnknownViewError, SourceError) as error:
        errors.print(f"error: {error}")
        return 2
    return 0
