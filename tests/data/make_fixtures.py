"""Make the PDF and DOCX fixtures of tests/test_formats.py, each by a different producer.

Run once, by hand, from the repository root; the files are committed, so the tests need none of these tools:

    pip install fpdf2 reportlab python-docx     # generators only: not dependencies of the package
    apt-get install -y libreoffice-writer-nogui texlive-latex-base
    python tests/data/make_fixtures.py

Every PDF has a running header and a page number on each page, a paragraph that runs on across a page break and
a word hyphenated at the end of a line ("infor-" / "mation"), so the tests can see layout noise cleaned. Dates are
fixed (SOURCE_DATE_EPOCH and explicit creation dates) so a rerun makes the same text and metadata.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent / "formats"

# Body text for the PDFs: paragraphs of plain prose; "infor-mation" is split by hand at a line end.
PARAGRAPHS = [
    "The tidal survey of the estuary began in the spring, when the harbour master asked the pilots to record the "
    "height of every high water at the old stone quay. The pilots kept their notes in a ledger that still survives "
    "in the port archive, and the ledger shows that the work was done with great care over many months.",
    "Each morning the pilots rowed out to the channel markers and read the painted scales by hand. They wrote down "
    "the time, the height and the direction of the wind, and they added a remark when fog or rain made the "
    "reading uncertain, so that later readers could weigh each figure for themselves.",
    "By the end of the first year the ledger held more than seven hundred readings. The harbour master sent a "
    "summary to the admiralty, which printed it as a short pamphlet for the use of captains entering the river "
    "at night, when the lights on the southern bank were hard to see from the bar.",
    "The pamphlet gave captains the infor@mation they needed to cross the bar safely at any state of the tide, "
    "and the number of ships that ran aground near the lighthouse fell sharply in the following decade, as the "
    "insurers of the port were glad to report to their members at every annual meeting they held.",
    "Later surveys used automatic gauges, but the old ledger remains the longest continuous record of the tides "
    "in the estuary. Historians of the port still consult it when they study the great flood of the winter in "
    "which the lower town was abandoned for three weeks and the market moved up the hill.",
]
PDF_INFO = {"title": "Tidal Survey of the Estuary", "author": "Maria Fonseca", "year": 2019}


def wrapped_lines(width: int = 62) -> list[str | None]:
    """The body as lines of at most `width` characters, None between paragraphs; "@" marks the hand hyphen."""
    out: list[str | None] = []
    for para in PARAGRAPHS:
        for line in textwrap.wrap(para, width):
            if "@" in line:  # break the word here: "infor-" ends this line, "mation" starts the next
                head, tail = line.split("@", 1)
                out += [head + "-", tail] if len(tail) > 0 else [head + "-"]
            else:
                out.append(line)
        out.append(None)
    return out


def make_fpdf(path: Path) -> None:
    from fpdf import FPDF

    class Doc(FPDF):
        def header(self):
            self.set_font("Helvetica", "I", 9)
            self.cell(0, 8, "Harbour Records of the Estuary", align="C")
            self.ln(12)

        def footer(self):
            self.set_y(-15)
            self.set_font("Helvetica", "", 9)
            self.cell(0, 8, f"Page {self.page_no()}", align="C")

    pdf = Doc(format=(105, 148))
    pdf.set_title(PDF_INFO["title"])
    pdf.set_author(PDF_INFO["author"])
    pdf.set_creation_date(dt.datetime(PDF_INFO["year"], 5, 4, 12, 0, tzinfo=dt.UTC))
    pdf.set_auto_page_break(True, margin=18)
    pdf.add_page()
    pdf.set_font("Helvetica", "", 10)
    for line in wrapped_lines(46):
        pdf.cell(0, 5, line or "", new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))


def make_reportlab(path: Path) -> None:
    from reportlab.lib.pagesizes import A6
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A6, invariant=1)  # invariant: no random ids, a fixed date
    c.setTitle("Notes on the Estuary Ledger")
    c.setAuthor("Jonas Berg")
    width, height = A6
    page = 1

    def furniture():
        c.setFont("Helvetica-Oblique", 8)
        c.drawCentredString(width / 2, height - 20, "Port Archive Studies")
        c.setFont("Helvetica", 8)
        c.drawCentredString(width / 2, 18, str(page))

    furniture()
    y = height - 45
    for line in wrapped_lines(44):
        if y < 40:
            c.showPage()
            page += 1
            furniture()
            y = height - 45
        c.setFont("Helvetica", 10)
        if line:
            c.drawString(22, y, line)
        y -= 13 if line else 7
    c.showPage()
    c.save()


def make_docx(path: Path, header: str | None = None) -> None:
    """The DOCX fixture (python-docx): core properties, Heading 1/2 styles; with `header`, a page header and a
    page-number footer for the LibreOffice PDF made from it."""
    from docx import Document
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    doc = Document()
    doc.core_properties.title = "Minutes of the Harbour Board"
    doc.core_properties.author = "Ana Ribeiro"
    doc.core_properties.comments = "The board's minutes of its March meeting: dredging and the lighthouse."
    doc.core_properties.created = dt.datetime(2021, 3, 9, 10, 0)
    doc.core_properties.modified = dt.datetime(2021, 3, 9, 10, 0)
    doc.add_heading("Minutes of the Harbour Board", level=1)
    doc.add_heading("Dredging of the channel", level=2)
    doc.add_paragraph(
        "The board discussed the dredging of the northern channel at length. The engineer reported that silt had "
        "raised the bed by almost a metre since the last survey, and that larger ships now waited for the high "
        "water before they could enter the inner harbour with a full cargo."
    )
    doc.add_paragraph(
        "The members agreed to hire two dredgers from the neighbouring port for the summer months, and asked the "
        "treasurer to find the money in the reserve fund rather than raise the harbour dues again this year."
    )
    doc.add_heading("Repairs to the lighthouse", level=2)
    doc.add_paragraph(
        "The keeper of the southern lighthouse wrote that the lamp room leaked in every storm and that the glass "
        "of the great lens had cracked during the winter gales. The board voted to send a mason and a glazier "
        "before the autumn, when the nights grow long and the light matters most to the fishing fleet."
    )
    for i in range(6 if header else 0):  # more text, so the LibreOffice PDF runs to several pages
        doc.add_paragraph(PARAGRAPHS[i % len(PARAGRAPHS)].replace("@", ""))
    if header:
        section = doc.sections[0]
        section.header.paragraphs[0].text = header
        footer = section.footer.paragraphs[0]
        run = footer.add_run()
        for kind, text in (("begin", None), (None, "PAGE"), ("end", None)):
            if kind:
                el = OxmlElement("w:fldChar")
                el.set(qn("w:fldCharType"), kind)
            else:
                el = OxmlElement("w:instrText")
                el.text = text
            run._r.append(el)
    doc.save(str(path))


def make_libreoffice(path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / (path.stem + ".docx")
        make_docx(src, header="Harbour Board Papers")
        subprocess.run(
            ["soffice", "--headless", "--convert-to", "pdf", "--outdir", tmp, str(src)],
            check=True,
            capture_output=True,
            env=os.environ | {"HOME": tmp},
        )
        shutil.copyfile(Path(tmp) / (path.stem + ".pdf"), path)


LATEX = r"""\documentclass[11pt]{article}
\input glyphtounicode \pdfgentounicode=1
\pdfinfo{/Title (The Lighthouse Keepers of the Southern Bank) /Author (Teresa Lopes)}
\pagestyle{myheadings}\markright{Lighthouse Keepers}
\textheight=14cm \textwidth=9cm
\begin{document}
%s
\end{document}
"""


def make_latex(path: Path) -> None:
    body = "\n\n".join(
        [
            r"\section{The keepers}",
            "The keepers of the southern lighthouse were appointed by the harbour board and lived with their "
            "families in the cottage beside the tower. Their duties were written down in a book of instructions "
            "that required them to trim the wicks, polish the lens and record the weather every four hours.",
            "Correspondence between the keepers and the board shows how much depended on their vigilance and how "
            "little they were paid for it. In one letter a keeper explains that the characteristic information "
            "signalled by the revolving light was misunderstood by foreign captains unfamiliar with the coast.",
            r"\section{The great storm}",
        ]
        + [p.replace("@", "") for p in PARAGRAPHS]
        + [
            "After the storm the board rebuilt the gallery and installed a stronger lantern, paid for by a "
            "subscription among the merchants, whose ships had been saved by the keepers during that terrible night."
        ]
    )
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "doc.tex").write_text(LATEX % body, encoding="utf-8")
        env = os.environ | {"SOURCE_DATE_EPOCH": "1262304000", "FORCE_SOURCE_DATE": "1"}  # 2010-01-01
        for _ in range(2):
            subprocess.run(["pdflatex", "-interaction=batchmode", "doc.tex"], cwd=tmp, check=True, env=env)
        shutil.copyfile(Path(tmp) / "doc.pdf", path)


def make_scanned(path: Path) -> None:
    """A page that is only a picture of text, as a scanner makes it: no text layer."""
    from fpdf import FPDF
    from PIL import Image, ImageDraw

    img = Image.new("L", (400, 200), 255)
    draw = ImageDraw.Draw(img)
    for i in range(8):
        draw.line((20, 20 + 20 * i, 380, 20 + 20 * i), fill=0, width=3)
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "scan.png"
        img.save(png)
        pdf = FPDF(format=(105, 148))
        pdf.set_creation_date(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        pdf.add_page()
        pdf.image(str(png), x=10, y=10, w=80)
        pdf.output(str(path))


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    make_fpdf(HERE / "survey-fpdf2.pdf")
    make_reportlab(HERE / "ledger-reportlab.pdf")
    make_libreoffice(HERE / "board-libreoffice.pdf")
    make_latex(HERE / "keepers-pdflatex.pdf")
    make_scanned(HERE / "scanned.pdf")
    make_docx(HERE / "minutes.docx")
    for p in sorted(HERE.iterdir()):
        print(f"{p.name}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
