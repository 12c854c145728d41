"""Draw app/page_icon.png: the Material Symbols "psychology" glyph, from the font that
ships inside Streamlit (Apache 2.0), in Streamlit's red.

The page icon is a file so the browser loads it from this server: given as
":material/psychology:", Streamlit's front end points the favicon at fonts.gstatic.com
(issue 12: nothing is fetched from outside at run time). Run once when changing it:
    python scripts/make_page_icon.py
"""
from pathlib import Path

import streamlit
from PIL import Image, ImageDraw, ImageFont

PSYCHOLOGY = "\uea4a"  # the glyph's code point in Material Symbols
OUT = Path(__file__).resolve().parent.parent / "app" / "page_icon.png"


def main() -> None:
    fonts = Path(streamlit.__file__).parent / "static" / "static" / "media"
    font_path = next(fonts.glob("MaterialSymbols-Rounded*.woff2"))
    font = ImageFont.truetype(str(font_path), 56)
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    ImageDraw.Draw(image).text((32, 32), PSYCHOLOGY, font=font, fill=(255, 75, 75, 255), anchor="mm")
    image.save(OUT, optimize=True)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
