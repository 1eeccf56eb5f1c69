#!/usr/bin/env python3
"""The tokenizer corpus: texts that exercise every rule of DeepSeek's tokenizer.

Usage: corpus.py            writes the corpus as JSON Lines {"text": S} on stdout
       corpus.py --count    prints how many texts there are, per family

Deterministic: the same texts on every machine (fixed seeds; no data files). Families: English,
whitespace and newline runs, digits of every length, code in several languages, Chinese, Japanese,
Korean, Arabic, Hebrew, Devanagari, Thai, Cyrillic, Greek, emoji (ZWJ sequences, skin tones,
flags, keycaps), combining marks, special-token text inside ordinary text, very long words, long
documents, the empty string, and random mixtures of all of them. tests/text/check_tokenizer.py
tokenizes it with the official library and with dsr1 and requires identical ids.
"""
import json
import random
import sys

ENGLISH = [
    "The capital of France is",
    "The capital of France is Paris.",
    "Hello, world!",
    "Once upon a time, there was a little girl who lived in a village near the forest.",
    "It's a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
    "I'm sure you'll agree: we've done what we'd planned, and they're happy.",
    "Don't stop believing; hold on to that feeling!",
    "e.g. i.e. etc. Mr. Smith vs. Dr. Jones (U.S.A.)",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "the quick brown fox jumps over the lazy dog",
    "What is 2+2? It's 4. What about 17*23? That's 391.",
    "Email me at someone@example.com or visit https://example.com/path?q=1&r=two#frag",
    "C'est la vie. Déjà vu. Naïve café, résumé, coöperate, façade.",
    "Straße, Größe, Fußball, Äpfel, Öl, Übermut",
    "¿Dónde está la biblioteca? ¡Aquí!",
    "\"Quoted\" 'single' «guillemets» „Gänsefüßchen“ ‘curly’ “double”",
    "Em—dash, en–dash, ellipsis… bullet • middot · section § pilcrow ¶",
    "Prices: $5.99, €10, £3.50, ¥1000, ₹250, ₿0.001",
    "100% sure; 50/50 chance; 3:30pm; 24/7; #1 fan; @handle",
    "A sentence with trailing spaces   ",
    "   leading spaces then words",
    "MixedCase camelCase PascalCase snake_case kebab-case SCREAMING_CASE",
    "Supercalifragilisticexpialidocious antidisestablishmentarianism",
    "DeepSeek-R1 is a reasoning model with 671B parameters (37B activated).",
    "Temperature 0.7, top-p 0.95, seed 1.",
    ".hidden .gitignore ..parent ...more",
    "-flag --long-option --key=value -abc",
    "(parenthesised) [bracketed] {braced} <angled>",
    "x=1;y=2;z=x+y",
    "a,b,c;d:e!f?g",
]

WHITESPACE_PARTS = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", "\n\n\n\n", " \n", "\n ",
                    "\u00a0", "\u3000", "\u2003", "\u2009", "\u202f", "\u205f", "\u1680", "\u0085",
                    "\u2028", "\u2029", "\u000b", "\u000c", "\u180e", "\u200b", "\ufeff", " \t \n"]

CODE = [
    'def fib(n):\n    """Return the n-th Fibonacci number."""\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\nprint(fib(30))\n',
    '#include <iostream>\n#include <vector>\n\nint main() {\n  std::vector<int> v{1, 2, 3};\n  for (auto& x : v) x *= 2;\n  std::cout << v[0] << "\\n";\n  return 0;\n}\n',
    'const add = (a, b) => a + b;\nexport default function App() {\n  const [count, setCount] = useState(0);\n  return <button onClick={() => setCount(count + 1)}>{count}</button>;\n}\n',
    'fn main() {\n    let v: Vec<u32> = (1..=10).map(|x| x * x).collect();\n    println!("{:?}", v);\n}\n',
    'package main\n\nimport "fmt"\n\nfunc main() {\n\tch := make(chan int)\n\tgo func() { ch <- 42 }()\n\tfmt.Println(<-ch)\n}\n',
    'SELECT u.id, COUNT(*) AS n\nFROM users u\nJOIN orders o ON o.user_id = u.id\nWHERE o.total > 100.00\nGROUP BY u.id\nORDER BY n DESC;\n',
    '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>Test</title></head>\n<body><p class="x">Hi &amp; bye</p></body>\n</html>\n',
    '{"name": "dsr1", "version": "0.1.0", "tags": ["a", "b"], "nested": {"x": 1.5e-3, "y": null, "z": true}}',
    '#!/bin/bash\nset -euo pipefail\nfor f in *.txt; do\n  wc -l "$f" | awk \'{print $1}\' >> counts.log\ndone\n',
    '\\begin{equation}\n  \\mathrm{softmax}(x)_i = \\frac{e^{x_i}}{\\sum_j e^{x_j}}\n\\end{equation}\n',
    'public class Main {\n    public static void main(String[] args) {\n        System.out.println("Hello, " + args.length);\n    }\n}\n',
    '(defun square (x) (* x x))\n(mapcar #\'square \'(1 2 3))\n',
    'x <- c(1, 2, 3)\nmean(x); sd(x)\nlibrary(ggplot2)\n',
    'import numpy as np\nA = np.random.randn(128, 64).astype(np.float32)\nU, S, Vt = np.linalg.svd(A, full_matrices=False)\n',
    '    indented\twith\ttabs\n\t\tand mixed   spaces  \n',
    'if (a && b || !c) { x += y << 2; z = p->q.r[i]; } else if (m != n) { return -1; }',
    '// comment\n/* block\n   comment */\n# hash comment\n-- sql comment\n',
    'regex = r"^(?P<key>[a-z_]+)\\s*=\\s*(?P<value>.*?)\\s*$"',
    '```python\nprint("fenced")\n```\n',
    'a==b!=c<=d>=e->f=>g::h...i**j//k%%l^^m~~n',
]

CHINESE = ["深度求索是一家人工智能公司。", "你好，世界！今天天气很好。", "法国的首都是巴黎。", "中华人民共和国成立于1949年10月1日。",
           "机器学习（Machine Learning）是人工智能的一个分支。", "我爱北京天安门，天安门上太阳升。", "这是一个测试：包括标点符号、数字123和English混合。",
           "龘靐齉齾爩鱻麤龗灪", "《红楼梦》是中国古典四大名著之一。", "他说：“我们明天见。”"]
JAPANESE = ["こんにちは、世界！", "日本の首都は東京です。", "カタカナとひらがなと漢字が混ざった文章。", "ｶﾀｶﾅ（半角）とカタカナ（全角）", "ゝゞヽヾー〜",
            "私は学生です。毎日、図書館で本を読みます。", "東京スカイツリーの高さは634メートルです。"]
KOREAN = ["안녕하세요, 세계!", "대한민국의 수도는 서울입니다.", "한글은 세종대왕이 만들었습니다.", "ㄱㄴㄷㄹ ㅏㅑㅓㅕ 가나다라"]
ARABIC = ["مرحبا بالعالم!", "عاصمة فرنسا هي باريس.", "بِسْمِ ٱللَّٰهِ ٱلرَّحْمَٰنِ ٱلرَّحِيمِ", "الأرقام: ٠١٢٣٤٥٦٧٨٩ و 0123456789", "اللغة العربية جميلة، أليس كذلك؟"]
HEBREW = ["שלום עולם!", "בְּרֵאשִׁית בָּרָא אֱלֹהִים"]
DEVANAGARI = ["नमस्ते दुनिया!", "भारत की राजधानी नई दिल्ली है।", "संस्कृतम् एका प्राचीना भाषा अस्ति।", "अंक: ०१२३४५६७८९", "क्षत्रिय ज्ञान श्रृंगार"]
THAI = ["สวัสดีชาวโลก", "ประเทศไทยมีเมืองหลวงชื่อกรุงเทพมหานคร"]
CYRILLIC = ["Привет, мир!", "Столица России — Москва.", "Съешь же ещё этих мягких французских булок, да выпей чаю.", "Ёлка, йогурт, щука, ъ, ь, ЭЮЯ",
            "Україна, Київ, ґанок, їжак, є", "Српски: Београд, ђак, џеп, љубав, њива"]
GREEK = ["Γειά σου Κόσμε!", "Η πρωτεύουσα της Ελλάδας είναι η Αθήνα.", "ΑΒΓΔ αβγδ άέήίόύώ ϊϋΐΰ", "∑ α_i β^j ≈ π ≠ ∞"]
OTHER_SCRIPTS = ["Tiếng Việt có dấu: ă â đ ê ô ơ ư ạ ả ấ ầ ẩ ẫ ậ", "தமிழ் மொழி", "বাংলা ভাষা", "ગુજરાતી", "ਪੰਜਾਬੀ", "ქართული ენა", "Հայերեն",
                 "አማርኛ", "ᚠᚢᚦᚨᚱᚲ runes", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 𝒮𝒸𝓇𝒾𝓅𝓉", "ꦗꦮ", "ᠮᠣᠩᠭᠣᠯ", "ཁམས་", "ລາວ", "ខ្មែរ", "မြန်မာ", "සිංහල", "ⲙⲉⲧⲣⲉⲙⲛ̀ⲭⲏⲙⲓ"]
EMOJI = ["👨‍👩‍👧‍👦", "👩🏽‍💻", "🏳️‍🌈", "🏴‍☠️", "👍🏻👍🏼👍🏽👍🏾👍🏿", "🇫🇷🇩🇪🇯🇵🇺🇸", "1️⃣2️⃣#️⃣*️⃣", "❤️‍🔥", "🧑‍🤝‍🧑", "😀😃😄😁😆😅🤣😂",
         "🫠🫨🪿🫎", "☺️☺︎", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "✊🏿 ✋ ✌️", "⌚⌛⏰", "🐉🀄🃏", "©️®️™️"]
COMBINING = ["e\u0301", "a\u0300\u0301\u0302\u0303\u0304", "\u0301 starts with a mark", " \u0301 after a space", "1\u0301 after a digit",
             "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u035b\u0341\u0334\u033b\u0348\u034d\u0354\u0339O\u0342\u030c\u030c\u0358\u0328\u0335\u0339\u033b\u031d\u0333",
             "n\u0303o\u0308 u\u030a", "\u0915\u094d\u0937", "한\u1100\u1161\u11a8", "ﬁ ﬂ ﬀ ǅ ǈ", "a\u20dd b\u20e3", "\u200d\u200c zero-width joiners", "x\ufe0f y\ufe0e"]
# Special and added tokens of DeepSeek-V3/R1 inside ordinary text (and near misses).
SPECIALS = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<｜▁pad▁｜>", "<think>", "</think>",
            "<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁output▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁begin｜>",
            "<｜place▁holder▁no▁0｜>", "<｜place▁holder▁no▁799｜>"]
NEAR_MISSES = ["<｜User", "｜User｜>", "<|User|>", "<｜user｜>", "<｜begin▁of▁sentence", "<｜begin_of_sentence｜>", "< ｜User｜>", "<<｜User｜>>", "<think", "think>"]


def whitespace_texts(rng):
    texts = []
    for a in WHITESPACE_PARTS:
        texts.append(f"word{a}word")
        texts.append(f"{a}leading")
        texts.append(f"trailing{a}")
        texts.append(a)
    for _ in range(40):
        parts = []
        for _ in range(rng.randint(2, 8)):
            parts.append(rng.choice(WHITESPACE_PARTS) * rng.randint(1, 5))
            parts.append(rng.choice(["x", "hello", "42", "!", "中文", "é", "", "\u0301", "—"]))
        texts.append("".join(parts))
    return texts


def digit_texts(rng):
    texts = []
    for n in range(1, 41):
        texts.append("".join(str((i * 7 + n) % 10) for i in range(n)))
    for n in [1, 2, 3, 4, 5, 6, 7, 10, 13, 50, 100]:
        texts.append("x" + "9" * n + "y")
        texts.append(" " + "1" * n)
        texts.append("3." + "14159265358979"[: n % 14 + 1])
    texts += ["٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९", "０１２３４５６７８９", "Ⅻ Ⅳ ⅷ", "²³¹ ⁴⁵ ₆₇", "½ ¾ ⅓ ⅞", "①②③", "𝟘𝟙𝟚𝟛", "1,234,567.89", "1e10 2E-5 0x1F 0b1010 0o17",
              "2026-12-04T10:39:36Z", "+1 (555) 123-4567", "v1.2.3-rc.4", "3.14159e+00", "১২৩ ๑๒๓ ༡༢༣", "〇一二三", "1st 2nd 3rd 4th"]
    for _ in range(20):
        texts.append("".join(rng.choice("0123456789 .,-+٣४５") for _ in range(rng.randint(1, 60))))
    return texts


def special_texts(rng):
    texts = []
    for s in SPECIALS:
        texts += [s, f"before{s}after", f"before {s} after", f"{s}{s}", f"\n{s}\n", f"123{s}456", f"中文{s}中文"]
    texts += NEAR_MISSES
    texts.append("<｜begin▁of▁sentence｜>You are a helpful assistant.<｜User｜>What is 1+1?<｜Assistant｜><think>\nEasy.\n</think>\n\n2<｜end▁of▁sentence｜>")
    for _ in range(15):
        texts.append("".join(rng.choice(SPECIALS + NEAR_MISSES + ["a", " ", "\n", "x y", "｜", "<", ">", "▁"]) for _ in range(rng.randint(2, 12))))
    return texts


def long_texts(rng):
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [
        "a" * 5000,
        "ab" * 3000,
        "".join(rng.choice(letters) for _ in range(20000)),
        "".join(rng.choice(letters + "ABCDEFGH") for _ in range(3000)),
        "9" * 10000,
        "!" * 3000,
        "-=" * 2000,
        " " * 5000 + "x",
        "\n" * 3000,
        " \n" * 2000,
        "中" * 4000,
        "".join(rng.choice(CHINESE[0] + CHINESE[1]) for _ in range(5000)),
        "😀" * 1500,
        "é" * 3000,
        "e\u0301" * 2000,
        "Привет" * 800,
        "\u0915\u094d" * 2000,
        "https://example.com/" + "a1b2c3" * 1500,
        "x" + "\u0301" * 3000,
        "_" * 4000 + "a",
    ]


def documents(rng, pool, count, length):
    docs = []
    for _ in range(count):
        parts, size = [], 0
        while size < length:
            p = rng.choice(pool)
            parts.append(p)
            parts.append(rng.choice([" ", "\n", "\n\n", "", "\t", " \n"]))
            size += len(p) + 1
        docs.append("".join(parts))
    return docs


def random_unicode(rng, count):
    # Code points from blocks of many scripts and categories (no surrogates, no noncharacter trickery).
    blocks = [(0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x52F), (0x590, 0x6FF), (0x900, 0x97F), (0xE00, 0xE7F),
              (0x1100, 0x11FF), (0x1E00, 0x1FFF), (0x2000, 0x206F), (0x20A0, 0x21FF), (0x2200, 0x23FF), (0x2500, 0x27BF),
              (0x3000, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFF00, 0xFFEF), (0x1F300, 0x1FAFF), (0x1D400, 0x1D7FF),
              (0x20000, 0x2A6DF)]
    texts = []
    for _ in range(count):
        n = rng.randint(1, 80)
        chars = []
        for _ in range(n):
            lo, hi = rng.choice(blocks)
            chars.append(chr(rng.randint(lo, hi)))
        texts.append("".join(chars))
    return texts


def families():
    rng = random.Random(17)
    scripts = CHINESE + JAPANESE + KOREAN + ARABIC + HEBREW + DEVANAGARI + THAI + CYRILLIC + GREEK + OTHER_SCRIPTS
    everything = ENGLISH + CODE + scripts + EMOJI + COMBINING + SPECIALS + WHITESPACE_PARTS
    return {
        "empty": [""],
        "english": ENGLISH + [a + " " + b for a, b in zip(ENGLISH, reversed(ENGLISH))],
        "whitespace": whitespace_texts(rng),
        "digits": digit_texts(rng),
        "code": CODE,
        "scripts": scripts + [a + b for a, b in zip(scripts, reversed(scripts))],
        "emoji": EMOJI + ["I love you " + e + "!" for e in EMOJI],
        "combining": COMBINING,
        "special tokens": special_texts(rng),
        "long words": long_texts(rng),
        "documents": documents(rng, everything, 6, 20000),
        "mixtures": documents(rng, everything, 40, 300),
        "random unicode": random_unicode(rng, 60),
        # Characters added in Unicode 15.0-16.0, which PCRE2 10.42 (Unicode 14.0) does not know:
        # the pre-tokenizer's additions table (reference/text/unicode16_additions.inc) classes
        # them as the official library does. A new emoji (U+1FAE8, 15.0), Kawi letters (15.0),
        # CJK Extension H (15.0) and I (15.1) ideographs, Todhri and Garay letters (16.0), a
        # Kannada combining mark (U+0CF3, 15.0), digits of Garay (16.0).
        "unicode 15-16": ["a \U0001FAE8)", "I feel \U0001FAE8 today!",
                          "\U00011F04\U00011F05\U00011F06 \U00011F07", "x\U00031350\U00031351y",
                          "\U0002EBF0\U0002EBF1, \U0002EBF2.", "\U000105C0\U000105C1 \U000105C2!",
                          "\U00010D50\U00010D51 12\U00010D40\U00010D41", "\u0C95\u0CF3 \u0C95",
                          "emoji \U0001FAE8\U0001FAE9\U0001FAEA then text"],
    }


def main():
    fams = families()
    if sys.argv[1:] == ["--count"]:
        for name, texts in fams.items():
            print(f"{name:16} {len(texts)}")
        print(f"{'total':16} {sum(len(t) for t in fams.values())}")
        return
    for texts in fams.values():
        for t in texts:
            sys.stdout.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
