#!/usr/bin/env python3
"""Turns extracted Debian packages into per-domain training, held-out and calibration text.

Called by build-corpus.sh (python3 standard library only):

    corpus.py EXTRACTED_DIR BUNDLED_CALIBRATION_DIR OUT_DIR

EXTRACTED_DIR holds one folder per package (the output of `dpkg-deb -x`), named as in packages.tsv. The rules below
say which files of which package make up each domain and how each kind of file becomes plain text. Everything is
processed in sorted order and nothing depends on the clock, the locale or the machine, so the same packages give
byte-identical output.
"""

import gzip
import hashlib
import html
import html.parser
import os
import re
import subprocess
import sys
import tarfile
import unicodedata

# ---------------------------------------------------------------------------------------------------------------------
# Which files of which package make up each domain.
#   (domain, package, include regex, exclude regex or None, kind)
# Regexes match the path inside the package (no leading slash). For tarballs shipped inside a package ("tar:" kinds),
# the include regex names the tarball and the member regex follows in TAR_MEMBERS.
# ---------------------------------------------------------------------------------------------------------------------
SPHINX_SKIP = r"(^|/)(genindex[^/]*|search|py-modindex|modindex|download)\.html$|/_static/|/_sources/|/_images/"

SOURCES = [
    ("python-docs", "python3.11-doc", r"^usr/share/doc/python3\.11/html/.+\.html$", SPHINX_SKIP, "html"),
    ("linux-docs", "linux-doc-6.1", r"^usr/share/doc/linux-doc-6\.1/html/.+\.html$", SPHINX_SKIP + r"|/translations/", "html"),
    ("manpages", "manpages", r"^usr/share/man/man[1-8]/[^/]+\.gz$", None, "man"),
    ("manpages", "manpages-dev", r"^usr/share/man/man[1-8]/[^/]+\.gz$", None, "man"),
    ("perl-docs", "perl-doc", r"^usr/share/man/man[13]/[^/]+\.gz$", None, "man"),
    ("postgresql-docs", "postgresql-doc-15", r"^usr/share/doc/postgresql-doc-15/html/.+\.html$",
     r"/(bookindex|index)\.html$", "html"),
    ("manuals", "git-doc", r"^usr/share/doc/git-doc/.+\.html$", r"/(index|cmds-[^/]*)\.html$", "html"),
    ("manuals", "debian-reference-en", r"^usr/share/debian-reference/.+\.en\.html$", r"/index\.en\.html$", "html"),
    ("manuals", "gnu-standards", r"^usr/share/doc/gnu-standards/.+\.html$", None, "html"),
    ("manuals", "bash-doc", r"^usr/share/doc/bash/bashref\.html$", None, "html"),
    ("manuals", "rust-src", r"^usr/src/rustc-1\.63\.0/src/doc/.+\.md$", r"/(SUMMARY|CHANGELOG|CONTRIBUTING)\.md$", "markdown"),
    ("code-python", "libpython3.11-minimal", r"^usr/lib/python3\.11/.+\.py$", None, "code"),
    ("code-python", "libpython3.11-stdlib", r"^usr/lib/python3\.11/.+\.py$", None, "code"),
    ("code-python", "libpython3.11-testsuite", r"^usr/lib/python3\.11/.+\.py$", r"/(data|[^/]*_data|bad[^/]*)/", "code"),
    ("code-python", "python3-django", r"^usr/lib/python3/dist-packages/django/.+\.py$", None, "code"),
    ("code-go", "golang-1.19-src", r"^usr/share/go-1\.19/src/.+\.go$", r"/testdata/|/vendor/", "code"),
    ("code-rust", "rust-src", r"^usr/src/rustc-1\.63\.0/(library|compiler)/.+\.rs$", r"/(tests?|benches)/", "code"),
    ("code-perl", "perl-modules-5.36", r"^usr/share/perl/5\.36\.0/.+\.(pm|pl)$", r"/unicore/", "perl"),
    ("code-c", "glibc-source", r"^usr/src/glibc/glibc-2\.36\.tar\.xz$", None, "tar:code"),
]
TAR_MEMBERS = {
    "glibc-source": (r"^glibc-2\.36/.+\.[ch]$", r"/(localedata|po|manual|benchtests|timezone)/|(^|/)libc-abis|/ulps"),
}

SPLIT_BUCKETS = 100          # split = SHA-256(package + "/" + path) mod 100: 0 held out, 1 calibration, rest train
MIN_CHARS = 200              # shorter documents are dropped (stubs, redirects, empty indices)
MAX_CODE_BYTES = 400_000     # larger code files are generated tables
MAX_CODE_LINE = 1000         # a code line longer than this marks data or minified text
MAX_PROSE_LINE = 2000        # prose lines are wrapped at word boundaries to this (the trainer's chunk size)
CODE_TRAIN_CAP = 16_000_000  # training bytes per code domain: a random (hash-ordered) subset of its documents, so that
                             # code is about half of the training tokens; held-out and calibration are not capped

# ---------------------------------------------------------------------------------------------------------------------
# HTML → text
# ---------------------------------------------------------------------------------------------------------------------
BLOCK_TAGS = {
    "address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details", "div", "dl", "dt",
    "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "ol", "p",
    "pre", "section", "summary", "table", "tbody", "tfoot", "thead", "tr", "ul",
}
PARAGRAPH_TAGS = {"blockquote", "dl", "h1", "h2", "h3", "h4", "h5", "h6", "ol", "p", "pre", "table", "ul"}
VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
SKIP_TAGS = {"button", "form", "head", "iframe", "math", "nav", "noscript", "object", "script", "select", "style",
             "svg", "template", "textarea", "title"}
# Navigation, page furniture and link decorations of Sphinx (classic and Read-the-Docs themes), DocBook XSL,
# AsciiDoc and Texinfo HTML.
SKIP_CLASSES = {
    "related", "sphinxsidebar", "footer", "headerlink", "navheader", "navfooter", "header", "nav-panel", "toc",
    "toctree-wrapper", "rst-footer-buttons", "wy-nav-side", "breadcrumbs", "navigation", "copybutton",
    "index-entries", "printindex", "index-cp", "index-fn", "index-vr", "index-ky", "index-pg", "index-tp",
    "contents", "menu", "mini-toc",
}
SKIP_IDS = {"footer", "header", "toc", "navigation", "sidebar", "search", "footer-text"}
SKIP_ROLES = {"navigation", "search", "contentinfo", "banner"}


def _content_root(tag, attrs):
    """The element whose text is the page's content, where a page marks one."""
    if attrs.get("itemprop") == "articleBody":
        return 2
    classes = set((attrs.get("class") or "").split())
    if attrs.get("role") == "main" or "body" in classes and tag == "div" or attrs.get("id") in ("content", "docContent"):
        return 1
    return 0


class _HtmlText(html.parser.HTMLParser):
    def __init__(self, root_rank):
        super().__init__(convert_charrefs=True)
        self.root_rank = root_rank      # only text inside elements of this _content_root rank is kept (0: all of body)
        self.stack = []                 # (tag, skip, root, pre)
        self.skip = 0
        self.root = 0
        self.pre = 0
        self.out = []                   # pieces; "\n" and "\n\n" are breaks, 1-tuples are <pre> text
        self.marker = ""
        self.line_has_text = False

    def _break(self, paragraph):
        piece = "\n\n" if paragraph else "\n"
        if self.out and self.out[-1] in ("\n", "\n\n"):       # consecutive breaks: the stronger one
            if piece == "\n\n":
                self.out[-1] = piece
        else:
            self.out.append(piece)
        self.line_has_text = False

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        if tag in VOID_TAGS:
            if tag in ("br", "hr") and not self.skip:
                self._break(tag == "hr")
            return
        classes = set(a.get("class", "").split())
        skip = (tag in SKIP_TAGS or classes & SKIP_CLASSES or any(c.startswith("index-") for c in classes)
                or a.get("id") in SKIP_IDS
                or a.get("role") in SKIP_ROLES or a.get("aria-hidden") == "true")
        root = self.root_rank > 0 and _content_root(tag, a) == self.root_rank
        self.stack.append((tag, bool(skip), root, tag == "pre"))
        self.skip += bool(skip)
        self.root += root
        self.pre += tag == "pre"
        if tag in BLOCK_TAGS:
            self._break(tag in PARAGRAPH_TAGS)
        if not self._emitting():
            return
        if tag == "li":
            self.marker = "- "          # written before the item's first text, after any breaks its <p> makes
        elif tag in ("td", "th"):
            self.marker = " | " if self.line_has_text else ""

    def handle_endtag(self, tag):
        if tag in VOID_TAGS or not any(t == tag for t, *_ in self.stack):
            return
        while self.stack:
            t, skip, root, pre = self.stack.pop()
            self.skip -= skip
            self.root -= root
            self.pre -= pre
            if t in BLOCK_TAGS:
                self._break(t in PARAGRAPH_TAGS)
            if t == tag:
                break

    def _emitting(self):
        return not self.skip and (self.root_rank == 0 or self.root > 0)

    def handle_data(self, data):
        if not self._emitting():
            return
        if self.marker and data.strip():
            self.out.append(self.marker)
            self.marker = ""
        self.line_has_text = self.line_has_text or bool(data.strip())
        if self.pre:
            self.out.append((data.replace("\r\n", "\n").replace("\xa0", " "),))
        else:
            self.out.append(re.sub(r"\s+", " ", data.replace("\xa0", " ")))

    def text(self):
        """The collected text: a line holding text from <pre> keeps its indentation, other lines are stripped."""
        lines, current, has_pre = [], [], False
        for piece in self.out + ["\n"]:
            if piece in ("\n", "\n\n"):
                line = "".join(current)
                lines.append(line.rstrip() if has_pre else re.sub(r"\s+", " ", line.strip()))
                current, has_pre = [], False
                if piece == "\n\n":
                    lines.append("")
            elif isinstance(piece, tuple):
                parts = piece[0].split("\n")
                for part in parts[:-1]:
                    current.append(part)
                    lines.append("".join(current).rstrip())
                    current = []
                current.append(parts[-1])
                has_pre = True
            else:
                current.append(piece)
        return "\n".join(lines)


def html_to_text(raw):
    text = raw.decode("utf-8")
    rank = max((_content_root(m.group(1).lower(), _attrs(m.group(2))) for m in re.finditer(r"<(\w+)([^>]*)>", text)),
               default=0)
    parser = _HtmlText(rank)
    parser.feed(text)
    parser.close()
    lines = []
    for line in parser.text().split("\n"):
        line = re.sub(r"^\| ", "", line)            # a table row's first cell separator
        if re.fullmatch(r"[\s|]*|Jump to:.*|(\S{1,2} ){4,}\S{1,2}", line):
            line = ""                                # empty rows, index letter bars
        lines.append(line)
    return "\n".join(lines)


def _attrs(s):
    attrs = {}
    for m in re.finditer(r"([\w:-]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s>]+))", s):
        attrs[m.group(1).lower()] = html.unescape(next(g for g in m.groups()[1:] if g is not None))
    return attrs


# ---------------------------------------------------------------------------------------------------------------------
# man pages (groff) → text
# ---------------------------------------------------------------------------------------------------------------------
def man_to_text(raw):
    source = gzip.decompress(raw)
    if re.fullmatch(rb"\s*\.so\s+\S+\s*", source):
        return None                                    # a link to another page, which is rendered itself
    # -k: input encoding via preconv; -t: tbl; -P-cbou: no SGR, no overstriking; -rLL: a line as long as a paragraph,
    # so paragraphs come out unwrapped; -rHY=0: no hyphenation; -rcR=1: one continuous page.
    result = subprocess.run(
        ["groff", "-k", "-t", "-man", "-Tutf8", "-P-cbou", "-rLL=1800n", "-rHY=0", "-rcR=1", "-Ww"],
        input=source, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_C_ENV, check=False)
    if result.returncode != 0:
        return None
    lines = result.stdout.decode("utf-8").split("\n")
    nonblank = [i for i, line in enumerate(lines) if line.strip()]
    if len(nonblank) < 3:
        return None
    lines = lines[nonblank[0] + 1:nonblank[-1]]        # the page header and footer lines
    out = []
    for line in lines:
        # tbl draws boxes across the whole (very long) line: keep the column bars as "|", drop the rules
        line = re.sub(r"[\u2500-\u257f]", lambda m: "|" if m.group(0) in "\u2502\u2503" else " ", line)
        if re.fullmatch(r"[\s|]*", line):
            line = ""
        indent = len(line) - len(line.lstrip(" "))
        body = re.sub(r"\s+", " ", line.strip())
        out.append(" " * max(0, indent - 7) + body if indent >= 7 else body)
    return "\n".join(out)


_C_ENV = {"LC_ALL": "C.UTF-8", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


# ---------------------------------------------------------------------------------------------------------------------
# cleaning
# ---------------------------------------------------------------------------------------------------------------------
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\u200c\u200d\u2060\ufeff]")


def normalise(text):
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _CONTROL.sub("", text)
    lines = [line.rstrip() for line in text.split("\n")]
    out = []
    for line in lines:                                  # at most one blank line in a row
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out)


def wrap_long_lines(text, limit):
    out = []
    for line in text.split("\n"):
        while len(line) > limit:
            cut = line.rfind(". ", 0, limit)
            cut = cut + 1 if cut > limit // 2 else line.rfind(" ", 0, limit)
            if cut <= 0:
                cut = limit
            out.append(line[:cut].rstrip())
            line = line[cut:].lstrip()
        out.append(line)
    return "\n".join(out)


def strip_pod(text):
    """Perl source without its embedded POD documentation (which perl-docs holds, rendered)."""
    out, in_pod = [], False
    for line in text.split("\n"):
        if re.match(r"=[a-zA-Z]", line):
            in_pod = not line.startswith("=cut")
            continue
        if line.startswith("__END__") or line.startswith("__DATA__"):
            break
        if not in_pod:
            out.append(line)
    return "\n".join(out)


GENERATED = re.compile(r"code generated .*do not edit|do not edit[^\n]*generated|automatically generated|"
                       r"autogenerated|generated by [\w./-]+\.(py|pl|sh|go)\b", re.IGNORECASE)


def check(text, kind):
    """Why a cleaned document is dropped, or None to keep it."""
    if len(text) < MIN_CHARS:
        return "short"
    visible = re.sub(r"\s", "", text)
    if kind == "code":
        if len(text.encode("utf-8")) > MAX_CODE_BYTES:
            return "large-code"
        if max(len(line) for line in text.split("\n")) > MAX_CODE_LINE:
            return "long-lines"
        if GENERATED.search("\n".join(text.split("\n")[:15])):
            return "generated"
        digits = sum(c.isdigit() for c in visible)
        if digits > 0.35 * len(visible):
            return "numeric"
    else:
        letters = sum(c.isalpha() for c in visible)
        if letters < 0.55 * len(visible):
            return "non-text"
        ascii_letters = sum("a" <= c.lower() <= "z" for c in visible)
        if ascii_letters < 0.8 * letters:
            return "non-english"
    return None


def convert(kind, raw):
    """Raw file bytes → normalised text, or None when the file has no text to keep."""
    if kind == "html":
        text = html_to_text(raw)
    elif kind == "man":
        text = man_to_text(raw)
    else:
        text = raw.decode("utf-8")
        if kind == "perl":
            text = strip_pod(text)
        elif kind == "markdown":
            text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
            text = re.sub(r"^\{\{#[^}]*\}\}\s*$", "", text, flags=re.MULTILINE)   # mdBook include directives
    if text is None:
        return None
    text = normalise(text)
    if kind not in ("code", "perl"):
        text = wrap_long_lines(text, MAX_PROSE_LINE)
    return text


# ---------------------------------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------------------------------
def files_of(root, include, exclude):
    found = []
    for directory, dirs, names in os.walk(root):
        dirs.sort()
        for name in names:
            full = os.path.join(directory, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            if re.search(include, rel) and not (exclude and re.search(exclude, rel)):
                found.append(rel)
    return sorted(found)


def documents(extracted, domain, package, include, exclude, kind):
    """Yields (path, raw bytes, kind) of one source rule, in sorted path order."""
    root = os.path.join(extracted, package)
    if not os.path.isdir(root):
        sys.exit(f"corpus.py: package '{package}' (domain {domain}) was not extracted to {root}")
    paths = files_of(root, include, exclude)
    if not paths:
        sys.exit(f"corpus.py: no file of package '{package}' matches {include} (domain {domain})")
    if kind.startswith("tar:"):
        member_include, member_exclude = TAR_MEMBERS[package]
        for path in paths:
            with tarfile.open(os.path.join(root, path), "r:*") as tar:
                members = sorted((m for m in tar.getmembers() if m.isfile()
                                  and re.search(member_include, m.name)
                                  and not (member_exclude and re.search(member_exclude, m.name))),
                                 key=lambda m: m.name)
                for m in members:
                    yield path + "!" + m.name, tar.extractfile(m).read(), kind[4:]
        return
    for path in paths:
        with open(os.path.join(root, path), "rb") as f:
            yield path, f.read(), kind


def split_key(package, path):
    return hashlib.sha256(f"{package}/{path}".encode("utf-8")).digest()


def split_of(package, path):
    bucket = int.from_bytes(split_key(package, path)[:8], "big") % SPLIT_BUCKETS
    return "heldout" if bucket == 0 else "calibration" if bucket == 1 else "train"


def cap(docs, limit):
    """The documents (in hash order) that fit into limit bytes, and how many did not."""
    kept, total = [], 0
    for doc in sorted(docs, key=lambda d: split_key(d[0], d[1])):
        size = len(doc[2].encode("utf-8")) + 1
        if total + size > limit:
            continue
        kept.append(doc)
        total += size
    return kept, len(docs) - len(kept)


def copy_bundled(bundled, out_dir, rows_by_file):
    """The OLMoE domain samples of the repository, unchanged: calibration/train → train, calibration/heldout → heldout."""
    import shutil
    for split in ("train", "heldout"):
        source = os.path.join(bundled, split)
        for name in sorted(os.listdir(source)):
            if not name.endswith(".txt"):
                continue
            target = os.path.join(out_dir, split, name)
            if os.path.exists(target):
                sys.exit(f"corpus.py: bundled file {os.path.join(source, name)} has the name of a corpus domain")
            shutil.copyfile(os.path.join(source, name), target)
            with open(target, "rb") as f:
                lines = f.read().count(b"\n")
            rows_by_file[(split, name[:-4])] = (lines, "OLMoE sample (calibration/%s/%s; documents = lines)" % (split, name))


def write_manifest(out_dir, rows_by_file):
    with open(os.path.join(out_dir, "MANIFEST.tsv"), "w", encoding="utf-8", newline="\n") as f:
        f.write("domain\tsplit\tfile\tbytes\tdocuments\tsha256\tsource_packages\n")
        for (split, domain) in sorted(rows_by_file, key=lambda k: (k[1], ("train", "heldout", "calibration").index(k[0]))):
            documents_count, sources = rows_by_file[(split, domain)]
            rel = f"{split}/{domain}.txt"
            with open(os.path.join(out_dir, rel), "rb") as g:
                data = g.read()
            f.write(f"{domain}\t{split}\t{rel}\t{len(data)}\t{documents_count}\t{hashlib.sha256(data).hexdigest()}\t{sources}\n")


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: corpus.py EXTRACTED_DIR BUNDLED_CALIBRATION_DIR OUT_DIR")
    extracted, bundled, out_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    seen = {}                                   # text SHA-256 → first (package, path)
    kept = {}                                   # (domain, split) → list of (package, path, text)
    dropped = {}                                # (domain, reason) → count
    for domain, package, include, exclude, kind in SOURCES:
        print(f"corpus.py: {domain} ← {package}", file=sys.stderr, flush=True)
        for path, raw, file_kind in documents(extracted, domain, package, include, exclude, kind):
            try:
                text = convert(file_kind, raw)
            except UnicodeDecodeError:
                text, reason = None, "not-utf8"
            else:
                reason = "empty" if text is None else check(text, "code" if file_kind in ("code", "perl") else "prose")
            if reason is None:
                digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
                if digest in seen:
                    reason = "duplicate"
                else:
                    seen[digest] = (package, path)
            if reason:
                dropped[(domain, reason)] = dropped.get((domain, reason), 0) + 1
                continue
            kept.setdefault((domain, split_of(package, path)), []).append((package, path, text))
    for (domain, split), docs in kept.items():
        if split == "train" and domain.startswith("code-"):
            kept[(domain, split)], over = cap(docs, CODE_TRAIN_CAP)
            if over:
                dropped[(domain, "over-cap")] = over

    rows, rows_by_file = [], {}
    for split in ("train", "heldout", "calibration"):
        os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    for (domain, split) in sorted(kept):
        docs = sorted(kept[(domain, split)], key=lambda d: (d[0], d[1]))
        path = os.path.join(out_dir, split, domain + ".txt")
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            for i, (_, _, text) in enumerate(docs):
                if i:
                    f.write("\n")            # one blank line between documents
                f.write(text + "\n")
        rows_by_file[(split, domain)] = (len(docs), ",".join(sorted({d[0] for d in docs})))
        for package, doc_path, text in docs:
            rows.append((split, domain, package, doc_path, len(text.encode("utf-8")),
                         hashlib.sha256(text.encode("utf-8")).hexdigest()))
    with open(os.path.join(out_dir, "documents.tsv"), "w", encoding="utf-8", newline="\n") as f:
        f.write("split\tdomain\tpackage\tpath\tbytes\tsha256\n")
        for row in sorted(rows):
            f.write("\t".join(str(x) for x in row) + "\n")
    with open(os.path.join(out_dir, "dropped.tsv"), "w", encoding="utf-8", newline="\n") as f:
        f.write("domain\treason\tdocuments\n")
        for (domain, reason), n in sorted(dropped.items()):
            f.write(f"{domain}\t{reason}\t{n}\n")
    copy_bundled(bundled, out_dir, rows_by_file)
    write_manifest(out_dir, rows_by_file)


if __name__ == "__main__":
    main()
