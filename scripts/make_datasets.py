#!/usr/bin/env python3
"""Generate the built-in infer-eval datasets deterministically.

Writes four JSONL files (one compact JSON object per line, '\\n' endings):

  arithmetic.jsonl       100 items  {"id", "question", "answer"}
  capitals.jsonl         100 items  {"id", "question", "answer"}
  reasoning.jsonl         60 items  {"id", "question", "answer"}
  multiple_choice.jsonl   60 items  {"id", "question", "choices", "answer"}

The only randomness is random.Random with fixed seeds, so rerunning the
script reproduces byte-identical files. Python 3.11+, stdlib only.

Usage: python3 scripts/make_datasets.py [--out-dir DIR]
(DIR defaults to data/ under the repository root, the parent of scripts/).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# Fixed seeds, one per dataset, so editing one generator never perturbs another.
SEED_ARITHMETIC = 20240101
SEED_REASONING = 20240202
SEED_MULTIPLE_CHOICE = 20240303


# ---------------------------------------------------------------------------
# 1. Arithmetic
# ---------------------------------------------------------------------------

def make_arithmetic() -> list[dict]:
    rng = random.Random(SEED_ARITHMETIC)
    # 40 additions, 35 subtractions, 25 multiplications; interleaved below.
    plan = ["+"] * 40 + ["-"] * 35 + ["*"] * 25
    rng.shuffle(plan)
    seen: set[tuple[int, str, int]] = set()
    items = []
    for op in plan:
        while True:
            if op == "*":
                a, b = rng.randint(2, 9), rng.randint(2, 9)
            else:
                # Mix of 1- and 2-digit operands.
                a, b = rng.randint(1, 99), rng.randint(1, 99)
            if (a, op, b) not in seen:
                seen.add((a, op, b))
                break
        if op == "+":
            value, sym = a + b, "+"
        elif op == "-":
            value, sym = a - b, "-"
        else:
            value, sym = a * b, "*"
        items.append({"question": f"What is {a} {sym} {b}?", "answer": str(value)})
    return [{"id": f"arith-{i:03d}", **it} for i, it in enumerate(items, 1)]


# ---------------------------------------------------------------------------
# 2. Capitals
# ---------------------------------------------------------------------------

# (country as it reads after "the capital of", capital). Only sovereign states
# with long-settled, widely known capitals; ASCII spellings.
CAPITALS: list[tuple[str, str]] = [
    # Europe
    ("France", "Paris"),
    ("Germany", "Berlin"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Portugal", "Lisbon"),
    ("the United Kingdom", "London"),
    ("Ireland", "Dublin"),
    ("Belgium", "Brussels"),
    ("Switzerland", "Bern"),
    ("Austria", "Vienna"),
    ("Poland", "Warsaw"),
    ("the Czech Republic", "Prague"),
    ("Slovakia", "Bratislava"),
    ("Hungary", "Budapest"),
    ("Romania", "Bucharest"),
    ("Bulgaria", "Sofia"),
    ("Greece", "Athens"),
    ("Turkey", "Ankara"),
    ("Russia", "Moscow"),
    ("Belarus", "Minsk"),
    ("Lithuania", "Vilnius"),
    ("Latvia", "Riga"),
    ("Estonia", "Tallinn"),
    ("Finland", "Helsinki"),
    ("Sweden", "Stockholm"),
    ("Norway", "Oslo"),
    ("Denmark", "Copenhagen"),
    ("Iceland", "Reykjavik"),
    ("Serbia", "Belgrade"),
    ("Croatia", "Zagreb"),
    ("Slovenia", "Ljubljana"),
    ("Albania", "Tirana"),
    ("Malta", "Valletta"),
    ("Cyprus", "Nicosia"),
    # Africa
    ("Egypt", "Cairo"),
    ("Morocco", "Rabat"),
    ("Algeria", "Algiers"),
    ("Tunisia", "Tunis"),
    ("Libya", "Tripoli"),
    ("Ethiopia", "Addis Ababa"),
    ("Kenya", "Nairobi"),
    ("Uganda", "Kampala"),
    ("Rwanda", "Kigali"),
    ("Ghana", "Accra"),
    ("Senegal", "Dakar"),
    ("Zimbabwe", "Harare"),
    ("Zambia", "Lusaka"),
    ("Angola", "Luanda"),
    ("Mozambique", "Maputo"),
    ("Madagascar", "Antananarivo"),
    # Asia
    ("China", "Beijing"),
    ("Japan", "Tokyo"),
    ("South Korea", "Seoul"),
    ("North Korea", "Pyongyang"),
    ("India", "New Delhi"),
    ("Pakistan", "Islamabad"),
    ("Bangladesh", "Dhaka"),
    ("Nepal", "Kathmandu"),
    ("Afghanistan", "Kabul"),
    ("Iran", "Tehran"),
    ("Iraq", "Baghdad"),
    ("Syria", "Damascus"),
    ("Jordan", "Amman"),
    ("Lebanon", "Beirut"),
    ("Saudi Arabia", "Riyadh"),
    ("Oman", "Muscat"),
    ("the United Arab Emirates", "Abu Dhabi"),
    ("Qatar", "Doha"),
    ("Kuwait", "Kuwait City"),
    ("Thailand", "Bangkok"),
    ("Vietnam", "Hanoi"),
    ("Cambodia", "Phnom Penh"),
    ("Laos", "Vientiane"),
    ("Malaysia", "Kuala Lumpur"),
    ("the Philippines", "Manila"),
    ("Uzbekistan", "Tashkent"),
    ("Azerbaijan", "Baku"),
    ("Armenia", "Yerevan"),
    # Oceania
    ("Australia", "Canberra"),
    ("New Zealand", "Wellington"),
    # Americas
    ("Canada", "Ottawa"),
    ("Mexico", "Mexico City"),
    ("Cuba", "Havana"),
    ("Jamaica", "Kingston"),
    ("Haiti", "Port-au-Prince"),
    ("the Dominican Republic", "Santo Domingo"),
    ("Guatemala", "Guatemala City"),
    ("Honduras", "Tegucigalpa"),
    ("El Salvador", "San Salvador"),
    ("Nicaragua", "Managua"),
    ("Panama", "Panama City"),
    ("Colombia", "Bogota"),
    ("Venezuela", "Caracas"),
    ("Ecuador", "Quito"),
    ("Peru", "Lima"),
    ("Chile", "Santiago"),
    ("Argentina", "Buenos Aires"),
    ("Uruguay", "Montevideo"),
    ("Brazil", "Brasilia"),
    ("the Bahamas", "Nassau"),
]


def make_capitals() -> list[dict]:
    return [
        {
            "id": f"cap-{i:03d}",
            "question": f"What is the capital of {country}?",
            "answer": capital,
        }
        for i, (country, capital) in enumerate(CAPITALS, 1)
    ]


# ---------------------------------------------------------------------------
# 3. Reasoning
# ---------------------------------------------------------------------------

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]
OPPOSITES = [
    ("hot", "cold"),
    ("up", "down"),
    ("left", "right"),
    ("black", "white"),
    ("north", "south"),
    ("wet", "dry"),
    ("empty", "full"),
    ("true", "false"),
    ("yes", "no"),
    ("day", "night"),
]
NAMES = ["Tom", "Anna", "Sam", "Maria", "Ben", "Lucy", "Jack", "Emma", "Leo", "Mia"]


def _word_problem(kind: int, name: str, rng: random.Random) -> tuple[str, int]:
    if kind == 0:
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        return (f"{name} has {a} apples and buys {b} more. "
                f"How many apples does {name} have?", a + b)
    if kind == 1:
        a = rng.randint(6, 15)
        b = rng.randint(1, a - 1)
        return (f"{name} has {a} cookies and eats {b} of them. "
                f"How many cookies does {name} have left?", a - b)
    if kind == 2:
        a = rng.randint(6, 15)
        b = rng.randint(1, a - 1)
        return (f"There are {a} birds on a tree. {b} of them fly away. "
                f"How many birds are left on the tree?", a - b)
    if kind == 3:
        a, b = rng.randint(2, 6), rng.randint(2, 5)
        return (f"A box holds {a} pencils. "
                f"How many pencils are there in {b} boxes?", a * b)
    if kind == 4:
        a = rng.randint(10, 20)
        b = rng.randint(1, 9)
        return (f"{name} had {a} dollars and spent {b} dollars. "
                f"How many dollars does {name} have now?", a - b)
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    return (f"A farmer has {a} cows and {b} sheep. "
            f"How many animals does the farmer have in total?", a + b)


def make_reasoning() -> list[dict]:
    rng = random.Random(SEED_REASONING)
    items: list[tuple[str, str]] = []

    # 9 "larger" + 3 "smaller" comparisons of distinct numbers.
    pairs: set[frozenset[int]] = set()
    for i in range(12):
        while True:
            a, b = rng.randint(1, 99), rng.randint(1, 99)
            if a != b and frozenset((a, b)) not in pairs:
                pairs.add(frozenset((a, b)))
                break
        if i < 9:
            items.append((f"Which is larger, {a} or {b}?", str(max(a, b))))
        else:
            items.append((f"Which is smaller, {a} or {b}?", str(min(a, b))))

    # 7 day-after + 7 day-before (every weekday once each).
    for i, d in enumerate(DAYS):
        items.append((f"What day comes after {d}?", DAYS[(i + 1) % 7]))
    for i, d in enumerate(DAYS):
        items.append((f"What day comes before {d}?", DAYS[(i - 1) % 7]))

    # 6 month-after + 6 month-before (always including the year wrap-around).
    after = sorted(rng.sample(range(11), 5) + [11])
    before = sorted([0] + rng.sample(range(1, 12), 5))
    for i in after:
        items.append((f"What month comes after {MONTHS[i]}?", MONTHS[(i + 1) % 12]))
    for i in before:
        items.append((f"What month comes before {MONTHS[i]}?", MONTHS[(i - 1) % 12]))

    # 12 word problems, two of each template, answers computed.
    for k in range(12):
        q, v = _word_problem(k % 6, NAMES[k % len(NAMES)], rng)
        items.append((q, str(v)))

    # 10 opposites.
    for w, o in OPPOSITES:
        items.append((f"What is the opposite of {w}?", o))

    assert len(items) == 60, len(items)
    rng.shuffle(items)
    return [
        {"id": f"reason-{i:02d}", "question": q, "answer": a}
        for i, (q, a) in enumerate(items, 1)
    ]


# ---------------------------------------------------------------------------
# 4. Multiple choice
# ---------------------------------------------------------------------------

# (question, correct answer, three wrong answers)
MC_FACTS: list[tuple[str, str, list[str]]] = [
    ("What is the largest planet in the Solar System?", "Jupiter", ["Mars", "Venus", "Earth"]),
    ("Which planet is closest to the Sun?", "Mercury", ["Venus", "Earth", "Mars"]),
    ("Which planet is known as the Red Planet?", "Mars", ["Jupiter", "Saturn", "Neptune"]),
    ("Which planet is famous for its large, bright rings?", "Saturn", ["Mercury", "Mars", "Venus"]),
    ("What is the smallest planet in the Solar System?", "Mercury", ["Mars", "Venus", "Earth"]),
    ("Which planet is farthest from the Sun?", "Neptune", ["Uranus", "Saturn", "Jupiter"]),
    ("Which planet do humans live on?", "Earth", ["Mars", "Venus", "Jupiter"]),
    ("What star is at the center of the Solar System?", "The Sun", ["Sirius", "Polaris", "Betelgeuse"]),
    ("What is the name of Earth's only natural satellite?", "The Moon", ["The Sun", "Mars", "Halley's Comet"]),
    ("At what temperature does water freeze at sea level, in degrees Celsius?", "0", ["10", "32", "100"]),
    ("At what temperature does water boil at sea level, in degrees Celsius?", "100", ["0", "50", "212"]),
    ("At what temperature does water freeze at sea level, in degrees Fahrenheit?", "32", ["0", "100", "212"]),
    ("What is the chemical formula for water?", "H2O", ["CO2", "O2", "NaCl"]),
    ("Which gas do plants take in from the air for photosynthesis?", "Carbon dioxide", ["Oxygen", "Helium", "Hydrogen"]),
    ("Which gas do humans need to breathe in to survive?", "Oxygen", ["Carbon dioxide", "Helium", "Neon"]),
    ("What is the most abundant gas in Earth's atmosphere?", "Nitrogen", ["Oxygen", "Carbon dioxide", "Argon"]),
    ("What is the chemical symbol for gold?", "Au", ["Ag", "Fe", "Gd"]),
    ("What is the chemical symbol for iron?", "Fe", ["Ir", "In", "Au"]),
    ("Which metal is a liquid at room temperature?", "Mercury", ["Iron", "Copper", "Aluminum"]),
    ("What is the hardest natural substance?", "Diamond", ["Gold", "Iron", "Quartz"]),
    ("What is the process by which plants make food using sunlight?", "Photosynthesis", ["Respiration", "Digestion", "Evaporation"]),
    ("What force pulls objects toward the Earth?", "Gravity", ["Magnetism", "Friction", "Electricity"]),
    ("What is the SI unit of force?", "Newton", ["Joule", "Watt", "Pascal"]),
    ("What is the unit of electrical resistance?", "Ohm", ["Volt", "Ampere", "Watt"]),
    ("Which instrument is used to measure temperature?", "Thermometer", ["Barometer", "Ruler", "Compass"]),
    ("What is the frozen form of water called?", "Ice", ["Steam", "Fog", "Rain"]),
    ("What is the central part of an atom called?", "Nucleus", ["Electron", "Shell", "Orbit"]),
    ("Which blood cells carry oxygen around the body?", "Red blood cells", ["White blood cells", "Platelets", "Nerve cells"]),
    ("Which organ pumps blood through the human body?", "Heart", ["Liver", "Lungs", "Kidneys"]),
    ("Which organs do humans use to breathe?", "Lungs", ["Heart", "Stomach", "Liver"]),
    ("How many bones are in the adult human body?", "206", ["106", "306", "150"]),
    ("How many legs does a spider have?", "8", ["6", "10", "4"]),
    ("How many legs does an insect have?", "6", ["4", "8", "10"]),
    ("What is the largest animal on Earth?", "Blue whale", ["African elephant", "Giraffe", "Hippopotamus"]),
    ("What is the tallest land animal?", "Giraffe", ["Elephant", "Horse", "Camel"]),
    ("What is the fastest land animal?", "Cheetah", ["Lion", "Horse", "Elephant"]),
    ("Which of these animals is a mammal?", "Dolphin", ["Shark", "Salmon", "Octopus"]),
    ("Which of these animals hatches from an egg?", "Chicken", ["Dog", "Cat", "Cow"]),
    ("What do bees make?", "Honey", ["Milk", "Silk", "Wool"]),
    ("What is a baby dog called?", "Puppy", ["Kitten", "Calf", "Foal"]),
    ("What is a baby cat called?", "Kitten", ["Puppy", "Cub", "Lamb"]),
    ("Which animals are native to Australia and carry their young in a pouch?", "Kangaroos", ["Zebras", "Camels", "Penguins"]),
    ("What color do you get by mixing blue and yellow paint?", "Green", ["Purple", "Orange", "Red"]),
    ("What color do you get by mixing red and white paint?", "Pink", ["Green", "Blue", "Brown"]),
    ("What color is a ripe lemon?", "Yellow", ["Blue", "Purple", "Gray"]),
    ("What color is the sky on a clear, sunny day?", "Blue", ["Green", "Red", "Brown"]),
    ("How many centimeters are in one meter?", "100", ["10", "1000", "12"]),
    ("How many grams are in one kilogram?", "1000", ["100", "10", "60"]),
    ("How many minutes are in one hour?", "60", ["100", "30", "24"]),
    ("How many hours are in one day?", "24", ["12", "60", "7"]),
    ("How many days are in a week?", "7", ["5", "10", "12"]),
    ("How many months are in a year?", "12", ["10", "52", "7"]),
    ("How many sides does a triangle have?", "3", ["4", "5", "6"]),
    ("How many sides does a hexagon have?", "6", ["5", "7", "8"]),
    ("What is the largest ocean on Earth?", "Pacific Ocean", ["Atlantic Ocean", "Indian Ocean", "Arctic Ocean"]),
    ("Which is the largest continent by area?", "Asia", ["Africa", "Europe", "Australia"]),
    ("Which is the largest country in the world by area?", "Russia", ["Canada", "China", "Brazil"]),
    ("Which is the largest country in South America by area?", "Brazil", ["Argentina", "Peru", "Chile"]),
    ("On which continent is Kenya located?", "Africa", ["Europe", "South America", "Australia"]),
    ("In which direction does the Sun rise?", "East", ["West", "North", "South"]),
]


def make_multiple_choice() -> list[dict]:
    rng = random.Random(SEED_MULTIPLE_CHOICE)
    n = len(MC_FACTS)
    assert n % 4 == 0
    # Exactly n/4 items with the correct answer at each index 0..3.
    targets = [i % 4 for i in range(n)]
    rng.shuffle(targets)
    items = []
    for i, ((question, correct, wrong), target) in enumerate(zip(MC_FACTS, targets), 1):
        others = list(wrong)
        rng.shuffle(others)
        choices = others[:target] + [correct] + others[target:]
        items.append({
            "id": f"mc-{i:02d}",
            "question": question,
            "choices": choices,
            "answer": target,
        })
    return items


# ---------------------------------------------------------------------------

def write_jsonl(path: Path, items: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for obj in items:
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=REPO_ROOT / "data",
                    help="output directory (default: <repo>/data)")
    args = ap.parse_args()
    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    datasets = {
        "arithmetic.jsonl": make_arithmetic(),
        "capitals.jsonl": make_capitals(),
        "reasoning.jsonl": make_reasoning(),
        "multiple_choice.jsonl": make_multiple_choice(),
    }
    expected = {"arithmetic.jsonl": 100, "capitals.jsonl": 100,
                "reasoning.jsonl": 60, "multiple_choice.jsonl": 60}
    for name, items in datasets.items():
        assert len(items) == expected[name], (name, len(items))
        write_jsonl(out / name, items)
        print(f"wrote {len(items):4d} items to {out / name}")


if __name__ == "__main__":
    main()
