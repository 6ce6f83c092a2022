"""Regenerate the cipher word list (puzzles/data/cipher_words.json) from a competition CSV.

    python scripts/fit_cipher_words.py /work/shared/data/train_dev.csv
        [--out src/reasonlab/puzzles/data/cipher_words.json]

Reads the plaintext side of every cipher example and every answer (never the prompts'
ciphertext); each word's class is its position in the sentence template
(`cipher.collect_word_classes`). Only the word list is written, never rows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reasonlab.formats.csvio import read_rows
from reasonlab.formats.files import atomic_write
from reasonlab.puzzles import cipher
from reasonlab.puzzles.registry import classify

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src/reasonlab/puzzles/data/cipher_words.json"


def write_word_classes(csv_path: Path, out_path: Path) -> dict[str, list[str]]:
    plaintexts = []
    for row in read_rows(csv_path, required=("id", "prompt", "answer")):
        if classify(row["prompt"]).family == cipher.NAME:
            plaintexts += [plain for _, plain in cipher.parse(row["prompt"]).examples]
            plaintexts.append(row["answer"].strip())
    classes = cipher.collect_word_classes(plaintexts)
    source = (
        "Collected from the plaintext sides (examples and answers) of the cipher rows of "
        "the competition's train split by scripts/fit_cipher_words.py; "
        "each word's class is its position in the sentence template."
    )
    # One class per line: small diffs when the list is regenerated.
    body = ",\n".join(
        f"  {json.dumps(name)}: {json.dumps(words)}" for name, words in classes.items()
    )
    with atomic_write(out_path) as f:
        f.write(f'{{\n "source": {json.dumps(source)},\n "classes": {{\n{body}\n }}\n}}\n')
    return classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path, help="competition CSV with answers")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON")
    args = parser.parse_args()
    classes = write_word_classes(args.csv, args.out)
    print(f"{sum(map(len, classes.values()))} words in {len(classes)} classes -> {args.out}")


if __name__ == "__main__":
    main()
