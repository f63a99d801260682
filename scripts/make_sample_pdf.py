"""Write sample_corpus/guides/local-llms.pdf: a small two-page PDF with real text.

A hand-rolled PDF writer (Helvetica, one text object per page) so the sample
corpus needs no PDF library to build; pypdf extracts its text page by page.
Run: python scripts/make_sample_pdf.py
"""

from __future__ import annotations

import textwrap
from pathlib import Path

PAGES = [
    (
        "Running Language Models Locally",
        """Small language models can run on an ordinary CPU without a GPU. The llama.cpp project, written in C and C++,
        runs models stored in the GGUF format and supports many quantisation types. llama-cpp-python provides Python
        bindings and an OpenAI-compatible web server.

        Quantisation stores each weight with fewer bits. The Q4_K_M scheme uses about 4.5 bits per weight on average,
        cutting the file to roughly a quarter of its 16-bit size. Memory bandwidth, not arithmetic, usually limits
        generation speed on CPUs, so smaller weights also mean more tokens per second.

        Gemma 3 270M is a 270 million parameter model released by Google in 2025. Its Q4_K_M file is about 250 MB.
        It is a base model: it continues text rather than following chat instructions, so it is prompted with a
        completion-style prompt and stop sequences.""",
    ),
    (
        "Generation Settings",
        """Temperature controls randomness: 0 always picks the most likely token, while values near 1 sample more
        freely. For answers grounded in sources a low temperature such as 0.1 keeps the model close to the passages.

        A maximum token count caps the length of an answer and bounds the time it takes. Stop sequences end
        generation as soon as the model writes a marker such as a blank line followed by Question:.

        Generation on a CPU uses the thread count given to llama.cpp; it should not exceed the number of physical
        cores. Prompt evaluation is faster per token than generation because prompt tokens are processed in batches.
        Time to first token therefore grows with the length of the prompt.""",
    ),
]


def _escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _page_stream(title: str, body: str) -> bytes:
    lines = ["BT", "/F1 16 Tf", "72 740 Td", f"({_escape(title)}) Tj", "/F1 11 Tf", "0 -28 Td", "14 TL"]
    for para in textwrap.dedent(body).strip().split("\n\n"):
        flat = " ".join(para.split())
        for ln in textwrap.wrap(flat, 88):
            lines.append(f"({_escape(ln)}) Tj T*")
        lines.append("T*")
    lines.append("ET")
    return "\n".join(lines).encode("latin-1")


def build() -> bytes:
    objects: list[bytes] = []
    n_pages = len(PAGES)
    # 1 catalog, 2 pages, 3 font, then per page: page object, content stream; last: info
    page_ids = [4 + 2 * i for i in range(n_pages)]
    info_id = 4 + 2 * n_pages
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{pid} 0 R" for pid in page_ids)
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    for i, (title, body) in enumerate(PAGES):
        stream = _page_stream(title, body)
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {page_ids[i] + 1} 0 R >>".encode()
        )
        objects.append(f"<< /Length {len(stream)} >>\nstream\n".encode() + stream + b"\nendstream")
    objects.append(b"<< /Title (Running Language Models Locally) /Author (rag sample corpus) >>")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for num, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{num} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info {info_id} 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


if __name__ == "__main__":
    target = Path(__file__).resolve().parent.parent / "sample_corpus" / "guides" / "local-llms.pdf"
    target.write_bytes(build())
    print(target)
