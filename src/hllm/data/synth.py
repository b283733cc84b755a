"""A synthetic catalogue and interaction log whose item texts predict what users do next.

One generator feeds the tests, the demo and the component runs. It is built so that a text model has
something to learn that an id-popularity model cannot:

- items belong to topics; each topic has its own nouns, attributes, brands and description phrases, so
  an item's text names its topic and its brand;
- users follow a topic mixture concentrated on one or two topics that drifts, now and then, to a
  neighbouring topic on a ring, and they stay with the brand of their previous item with some probability;
  the next item is therefore predictable from the text of the last few items;
- popularity is Zipf-like within each topic, so a popularity ranker is a real but weaker baseline;
- ``cold_fraction`` of the items are released late (``COLD_RELEASE_WINDOW``), after every user's regular
  activity, and are chosen only after their release: by the ``RETURN_SHARE`` of users who come back for one
  last visit at the end of the window. Their texts are drawn like their topic peers', so a text model can
  recommend them; under leave-one-out they are test targets that no training sequence holds (the demo's
  cold-start slice: 95 of 600 test targets with the default config), and a temporal cut at 80% of the window
  leaves them unseen in training too.

A user never repeats an item (a choice: it keeps leave-one-out targets out of the history mask). Everything
is drawn from one ``numpy.random.Generator(seed)`` in a fixed order, so a config always yields identical
frames.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from hllm.data.schema import Dataset, canonical_interactions, canonical_items

logger = logging.getLogger(__name__)

DAY_SECONDS = 86_400
# Late ("cold") items are released in this part of the window (fractions of span_days), after every user's
# regular activity: only returning users' last visits can pick them, so under leave-one-out they are test
# targets that no training sequence holds (the cold-start slice), and a temporal cut at 80% never sees them.
COLD_RELEASE_WINDOW = (0.95, 0.97)
# Share of users who come back once more after the late releases, at a time in RETURN_WINDOW.
RETURN_SHARE = 0.4
RETURN_WINDOW = (0.97, 1.0)
# Share of a user's topic mixture spread evenly over every topic: exploration outside the main interests.
SPREAD = 0.06
# New items get attention: cold items' popularity is multiplied by this, so returning users often pick one.
NEW_ITEM_BOOST = 4.0


@dataclass(frozen=True)
class Topic:
    """Vocabulary of one topic; brands belong to exactly one topic."""

    word: str
    nouns: tuple[str, ...]
    attributes: tuple[str, ...]
    brands: tuple[str, ...]
    uses: tuple[str, ...]
    features: tuple[str, ...]


def _topic(word: str, nouns: str, attributes: str, brands: str, uses: str, features: str) -> Topic:
    def split(text: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in text.split(",") if part.strip())

    return Topic(word, split(nouns), split(attributes), split(brands), split(uses), split(features))


# Ring order matters: drift moves interest to a neighbour in this list (wrapping around).
TOPICS: tuple[Topic, ...] = (
    _topic("hiking", "backpack, trekking poles, trail boots, hydration bladder, headlamp, rain shell, gaiters, compass",
           "waterproof, ultralight, ventilated, rugged, packable, breathable, trail-rated, alpine",
           "Trailpeak, Summitra, Ridgewolf, Cairnline",
           "multi-day treks, steep alpine trails, summit pushes, backcountry loops, wet mountain hikes",
           "taped seams, a trekking harness, grippy lugged soles, reflective trim, a ridge-tested frame, "
           "hip-belt pockets"),
    _topic("cycling", "road bike, bike helmet, cycling jersey, saddle, bike light, chain lube, cleats, pump",
           "aero, carbon, clipless, tubeless, lightweight, endurance, gravel-ready, hi-vis",
           "Velocraft, Spokewise, Pedalon, Chainring Co",
           "long road rides, gravel racing, daily commuting, hill climbs, group rides",
           "a carbon fork, aerodynamic tubing, a padded chamois, a tubeless rim, a quick-release axle, "
           "integrated cadence sensing"),
    _topic("fitness", "kettlebell, yoga mat, resistance band, dumbbell set, foam roller, jump rope, pull-up bar, "
           "gym bag", "adjustable, non-slip, heavy-duty, compact, cushioned, high-density, sweat-proof, knurled",
           "Ironpulse, Flexora, Repforge, Corestrong",
           "home workouts, strength training, hiit circuits, mobility sessions, marathon prep",
           "a knurled grip, a non-slip surface, adjustable weight plates, a rep counter, dense foam, "
           "a sweat-wicking strap"),
    _topic("cooking", "chef knife, cast iron skillet, dutch oven, cutting board, wok, spice grinder, stockpot, "
           "saucepan", "forged, nonstick, enameled, seasoned, stainless, induction-ready, razor-sharp, oven-safe",
           "Saucier, Emberforge, Kitchwell, Panterra",
           "weeknight dinners, slow braises, stir fries, searing steaks, batch cooking",
           "a full-tang blade, an enameled interior, a riveted handle, even heat distribution, "
           "a pre-seasoned surface, a tight-fitting lid"),
    _topic("coffee", "espresso machine, burr grinder, pour-over kettle, french press, milk frother, coffee scale, "
           "aeropress, single-origin beans", "gooseneck, programmable, ceramic, freshly roasted, barista-grade, "
           "insulated, precision, conical", "Brewhaus, Crema Labs, Roastwell, Beanstead",
           "morning espresso, pour-over rituals, latte art, cold brew, cafe-style cappuccinos",
           "conical burrs, a steam wand, a gooseneck spout, a timer scale, a pressure gauge, "
           "a double-wall carafe"),
    _topic("gardening", "pruning shears, raised bed, watering can, seed starter kit, garden hose, compost bin, "
           "trowel, grow light", "organic, weatherproof, ergonomic, heirloom, self-watering, rust-resistant, "
           "expandable, perennial", "Greenthumb, Bloomwright, Soilcraft, Verdancy",
           "vegetable beds, balcony herbs, seed starting, rose pruning, backyard composting",
           "bypass blades, a drip tray, heirloom seed packets, a full-spectrum led, a kink-free hose, "
           "aerated compost vents"),
    _topic("reading", "hardcover novel, e-reader, book light, bookmark set, reading pillow, bookshelf, "
           "poetry anthology, mystery paperback", "illustrated, annotated, glare-free, bestselling, clip-on, "
           "first-edition, award-winning, unabridged", "Inkwell Press, Pagebound, Chapterhouse, Folio & Fern",
           "bedtime reading, book clubs, long commutes, literary deep dives, cosy weekends",
           "an e-ink display, gilded page edges, a warm amber light, a sewn binding, "
           "an author interview, a chapter-by-chapter guide"),
    _topic("painting", "watercolor set, acrylic paints, sable brushes, canvas panel, easel, palette knife, "
           "sketchbook, gouache tubes", "pigment-rich, archival, cold-pressed, lightfast, student-grade, "
           "artist-grade, blendable, heavy-body", "Pigmenta, Easelworks, Brushfield, Chroma & Co",
           "plein air studies, portrait painting, abstract canvases, botanical illustration, colour mixing",
           "cold-pressed cotton paper, lightfast pigments, a tabletop easel, sable-hair tips, "
           "a mixing palette, a gesso-primed surface"),
    _topic("photography", "mirrorless camera, prime lens, tripod, camera bag, lens filter, memory card, "
           "flash unit, gimbal", "full-frame, weather-sealed, fast-aperture, stabilized, high-resolution, "
           "wide-angle, telephoto, low-light", "Lumix Vale, Apertura, Shutterline, Focalis",
           "street photography, wildlife shoots, astrophotography, portrait sessions, landscape trips",
           "in-body stabilization, a fast autofocus, a weather-sealed body, a carbon tripod leg, "
           "a polarizing filter, a high-speed sensor"),
    _topic("travel", "carry-on suitcase, packing cubes, travel pillow, passport wallet, universal adapter, "
           "duffel bag, luggage tag, toiletry kit", "carry-on, spinner-wheel, tsa-approved, compressible, "
           "anti-theft, jet-set, wrinkle-free, rfid-blocking", "Wanderloom, Jetsetter Co, Nomadique, Roamwell",
           "long-haul flights, weekend getaways, backpacking abroad, business trips, city breaks",
           "spinner wheels, a tsa lock, compression zips, rfid-blocking pockets, a telescoping handle, "
           "a hidden passport sleeve"),
    _topic("audio", "wireless headphones, bookshelf speakers, turntable, studio monitors, earbuds, dac amplifier, "
           "soundbar, vinyl record", "noise-cancelling, hi-fi, lossless, bass-heavy, bluetooth, balanced, "
           "open-back, audiophile", "Sonance, Decibelle, Waveform Audio, Hifire",
           "critical listening, home theatre, vinyl nights, mixing sessions, noisy commutes",
           "active noise cancelling, a lossless codec, a belt-drive platter, planar drivers, "
           "a balanced output, a tuned bass port"),
    _topic("gaming", "mechanical keyboard, gaming mouse, headset, controller, gaming monitor, console, "
           "gaming chair, mouse pad", "rgb, low-latency, hot-swappable, ergonomic, high-refresh, wireless, "
           "esports-grade, programmable", "Fragforge, Pixelrift, Questlane, Nexplay",
           "competitive shooters, long rpg campaigns, speedrunning, couch co-op, streaming sessions",
           "hot-swappable switches, a 240hz panel, per-key rgb, a lightweight shell, "
           "programmable macros, a low-latency receiver"),
    _topic("baking", "stand mixer, sourdough starter, loaf pan, proofing basket, rolling pin, piping bags, "
           "bench scraper, cake stand", "artisan, high-hydration, silicone, fluted, non-stick, heritage, "
           "laminated, gluten-free", "Crumbcraft, Doughworks, Rise & Bloom, Ovenly",
           "sourdough loaves, birthday cakes, holiday cookies, laminated pastries, weekend bread",
           "a dough hook, a banneton liner, a rye starter culture, a tilt-head motor, "
           "a fluted edge, a marble surface"),
    _topic("pets", "dog harness, cat tree, chew toy, pet bed, grooming brush, litter box, fish tank, leash",
           "orthopedic, chew-resistant, reflective, washable, calming, odor-control, escape-proof, grain-free",
           "Pawsome, Tailwagger, Furrow & Co, Whiskerly",
           "daily walks, puppy training, indoor cats, long naps, aquarium care",
           "a padded chest plate, memory foam, a deshedding comb, a sisal scratching post, "
           "a quick-release buckle, an odor filter"),
    _topic("fishing", "spinning reel, fly rod, tackle box, fishing line, lure set, waders, landing net, bait cooler",
           "saltwater, braided, fluorocarbon, telescopic, floating, corrosion-proof, ultralight, sinking",
           "Reelmaster, Castaway, Troutline, Baitwell",
           "fly fishing trips, saltwater surf casting, ice fishing, bass tournaments, lake mornings",
           "a sealed drag system, a braided mainline, a sinking tip, a telescopic blank, "
           "rust-proof hooks, a rubber mesh net"),
    _topic("skincare", "face serum, moisturizer, sunscreen, cleanser, eye cream, sheet mask, toner, lip balm",
           "hydrating, fragrance-free, spf50, vitamin-c, hyaluronic, non-comedogenic, retinol, soothing",
           "Dermalux, Glowfield, Purelle, Aquaveil",
           "sensitive skin, morning routines, night repair, sunny days, dry winters",
           "hyaluronic acid, niacinamide, a mineral spf filter, ceramides, a dropper bottle, a soothing aloe base"),
)  # fmt: skip

_TEMPLATES: tuple[str, ...] = (
    "{brand} {noun} with {feature}, made for {use}. {a_attribute} pick for {word} fans who also want {feature2}.",
    "{a_attribute} {noun} from {brand} for {use}, featuring {feature} and {feature2}.",
    "Built for {use} and everyday {word}: this {attribute} {noun} by {brand} pairs {feature} with {feature2}.",
    "{brand} designed this {noun} around {feature}; {attribute} and ready for {use} and serious {word}.",
)


@dataclass
class SynthConfig:
    """Size, shape and behaviour of the synthetic dataset.

    Attributes:
        n_users: number of users.
        n_items: number of items in the catalogue (every one gets a row in the item table).
        n_topics: number of topics, taken in ring order from `TOPICS`.
        min_seq_len: shortest user sequence (3 at least: train, validation and test targets).
        max_seq_len: longest user sequence; lengths are uniform in ``[min_seq_len, max_seq_len]``.
        cold_fraction: share of items released late, picked only at returning users' last visits.
        start: first timestamp of the window, unix seconds (default 2022-01-01 00:00 UTC).
        span_days: length of the window in days.
        seed: seed of the single random generator every draw comes from.
        drift_prob: per-step probability that a user's main interest moves to a neighbouring topic.
        brand_loyalty: per-step probability that the next item has the previous item's brand.
        zipf_exponent: popularity of the item of rank r within its topic is proportional to r^-exponent.
    """

    n_users: int = 600
    n_items: int = 400
    n_topics: int = 12
    min_seq_len: int = 5
    max_seq_len: int = 30
    cold_fraction: float = 0.1
    start: int = 1_640_995_200
    span_days: int = 365
    seed: int = 0
    drift_prob: float = 0.08
    brand_loyalty: float = 0.35
    zipf_exponent: float = 1.0

    def __post_init__(self) -> None:
        def bad(name: str, rule: str) -> ValueError:
            return ValueError(f"SynthConfig.{name}={getattr(self, name)!r} is invalid: {rule}")

        if self.n_users < 1:
            raise bad("n_users", "must be >= 1")
        if not 1 <= self.n_topics <= len(TOPICS):
            raise bad("n_topics", f"must be in [1, {len(TOPICS)}]")
        if self.n_items < self.n_topics:
            raise bad("n_items", f"must be >= n_topics={self.n_topics} so every topic has an item")
        if self.min_seq_len < 3:
            raise bad("min_seq_len", "must be >= 3 (one train, one validation and one test item)")
        if self.max_seq_len < self.min_seq_len:
            raise bad("max_seq_len", f"must be >= min_seq_len={self.min_seq_len}")
        if not 0.0 <= self.cold_fraction < 1.0:
            raise bad("cold_fraction", "must be in [0, 1)")
        if self.max_seq_len > self.n_items - self.n_cold:
            # Items never repeat within a user, and cold items are unavailable for most of the window.
            raise bad("max_seq_len", f"must be <= the {self.n_items - self.n_cold} items released from the start")
        if self.start < 0:
            raise bad("start", "must be >= 0 (unix seconds)")
        if self.span_days < 1:
            raise bad("span_days", "must be >= 1")
        if self.seed < 0:
            raise bad("seed", "must be >= 0")
        if not 0.0 <= self.drift_prob <= 1.0:
            raise bad("drift_prob", "must be in [0, 1]")
        if not 0.0 <= self.brand_loyalty <= 1.0:
            raise bad("brand_loyalty", "must be in [0, 1]")
        if self.zipf_exponent < 0:
            raise bad("zipf_exponent", "must be >= 0")

    @property
    def n_cold(self) -> int:
        """Number of cold-start items."""
        return round(self.cold_fraction * self.n_items)

    @property
    def span_seconds(self) -> int:
        return self.span_days * DAY_SECONDS


@dataclass
class _Catalogue:
    """Item attributes the interaction process needs, indexed by item position."""

    items: pd.DataFrame
    topic: np.ndarray  # (I,) topic index
    brand: np.ndarray  # (I,) global brand index
    popularity: np.ndarray  # (I,) within-topic Zipf weight
    release: np.ndarray  # (I,) unix seconds from which the item can be chosen
    cold: np.ndarray  # (I,) bool, released late


def generate(config: SynthConfig) -> Dataset:
    """Generate the synthetic dataset described by ``config``.

    Args:
        config: sizes, behaviour and seed.

    Returns:
        A `Dataset` in canonical form: interactions grouped by user in time order, items sorted by id, and
        ``metadata = {"source": "synthetic", "config": asdict(config), "cold_items": [sorted cold item ids]}``.
    """
    rng = np.random.default_rng(config.seed)
    catalogue = _make_catalogue(config, rng)
    interactions = _make_interactions(config, catalogue, rng)
    logger.debug(
        "synthetic dataset: %d users, %d items, %d interactions", config.n_users, config.n_items, len(interactions)
    )
    return Dataset(
        interactions=canonical_interactions(interactions),
        items=canonical_items(catalogue.items),
        metadata={
            "source": "synthetic",
            "config": asdict(config),
            "cold_items": catalogue.items["item_id"][catalogue.cold].tolist(),
        },
    )


def _make_catalogue(config: SynthConfig, rng: np.random.Generator) -> _Catalogue:
    topics = TOPICS[: config.n_topics]
    n = config.n_items
    topic = rng.permutation(np.arange(n) % config.n_topics)  # every topic gets an item
    brand_offset = np.cumsum([0] + [len(t.brands) for t in topics])
    brand = np.empty(n, dtype=np.int64)
    popularity = np.empty(n, dtype=np.float64)
    for k in range(config.n_topics):
        members = np.flatnonzero(topic == k)
        brand[members] = brand_offset[k] + rng.integers(0, len(topics[k].brands), size=len(members))
        ranks = rng.permutation(len(members)) + 1
        popularity[members] = ranks.astype(np.float64) ** -config.zipf_exponent

    release = np.full(n, config.start, dtype=np.int64)
    cold = rng.choice(n, size=config.n_cold, replace=False)
    low, high = COLD_RELEASE_WINDOW
    is_cold = np.zeros(n, dtype=bool)
    is_cold[cold] = True
    popularity[cold] *= NEW_ITEM_BOOST
    release[cold] = config.start + (rng.uniform(low, high, size=len(cold)) * config.span_seconds).astype(np.int64)

    rows, titles = [], set()
    for i in range(n):
        vocab = topics[topic[i]]
        brand_name = vocab.brands[brand[i] - brand_offset[topic[i]]]
        attr, attr2, attr3 = rng.choice(vocab.attributes, size=3, replace=False)
        noun = vocab.nouns[rng.integers(len(vocab.nouns))]
        use = vocab.uses[rng.integers(len(vocab.uses))]
        feature, feature2 = rng.choice(vocab.features, size=2, replace=False)
        while True:  # model codes make titles unique; redraw on the rare clash
            code = "".join(rng.choice(list("ABCDEFGHJKLMNPRSTVXZ"), size=2)) + f"-{rng.integers(10, 1000)}"
            title = f"{brand_name} {attr} {noun} {code}"
            if title not in titles:
                titles.add(title)
                break
        template = _TEMPLATES[rng.integers(len(_TEMPLATES))]
        a_attribute = ("An " if attr[0] in "aeiou" else "A ") + attr
        description = template.format(
            brand=brand_name,
            noun=noun,
            attribute=attr,
            a_attribute=a_attribute,
            use=use,
            word=vocab.word,
            feature=feature,
            feature2=feature2,
        )
        description = description[0].upper() + description[1:]
        rows.append((f"i{i:05d}", title, f"{vocab.word}, {attr2}, {attr3}", description))
    items = pd.DataFrame(rows, columns=["item_id", "title", "tag", "description"])
    return _Catalogue(items=items, topic=topic, brand=brand, popularity=popularity, release=release, cold=is_cold)


def _make_timestamps(config: SynthConfig, lengths: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sorted event times per user, (U, max_len) int64, padded past each user's length.

    Users' regular activity ends uniformly between the middle of the window and the first late release, and
    lasts 10-40% of the window, so users start at different times. A ``RETURN_SHARE`` of the users come back
    once more in ``RETURN_WINDOW``, after every late release: that visit is their last event.
    """
    span = config.span_seconds
    returning = rng.random(config.n_users) < RETURN_SHARE
    regular = lengths - returning  # events before the late releases (>= 2)
    end = rng.uniform(0.5, COLD_RELEASE_WINDOW[0], size=config.n_users) * span
    begin = np.maximum(end - rng.uniform(0.1, 0.4, size=config.n_users) * span, 0.0)
    offsets = np.sort(rng.uniform(size=(config.n_users, config.max_seq_len)), axis=1)
    # Spread each user's regular events over [begin, end]; slots past them are never used or are the return.
    used = np.arange(config.max_seq_len)[None, :] < regular[:, None]
    last = np.take_along_axis(offsets, (regular - 1)[:, None], axis=1)
    offsets = np.where(used, offsets / last, 1.0)
    times = begin[:, None] + offsets * (end - begin)[:, None]
    back = rng.uniform(*RETURN_WINDOW, size=config.n_users) * span
    times[returning, regular[returning]] = back[returning]
    return config.start + np.floor(times).astype(np.int64)


def _make_interactions(config: SynthConfig, cat: _Catalogue, rng: np.random.Generator) -> pd.DataFrame:
    """Draw every user's sequence, one step for all users at a time."""
    n_users, n_topics = config.n_users, config.n_topics
    lengths = rng.integers(config.min_seq_len, config.max_seq_len + 1, size=n_users)
    times = _make_timestamps(config, lengths, rng)

    # Interests: a main topic, a secondary one (a ring neighbour half the time) and an even spread.
    main = rng.integers(0, n_topics, size=n_users)
    step = rng.choice([-1, 1], size=n_users)
    other = (main + rng.integers(1, max(n_topics, 2), size=n_users)) % n_topics
    second = np.where(rng.random(n_users) < 0.5, (main + step) % n_topics, other)
    main_weight = rng.uniform(0.6, 0.85, size=n_users)

    users = np.arange(n_users)
    seen = np.zeros((n_users, config.n_items), dtype=bool)
    chosen = np.full((n_users, config.max_seq_len), -1, dtype=np.int64)
    same_brand = cat.brand[None, :]
    for t in range(config.max_seq_len):
        if t > 0:  # drift: the main interest moves one step on the ring, the old one stays as secondary
            drift = rng.random(n_users) < config.drift_prob
            moved = (main + rng.choice([-1, 1], size=n_users)) % n_topics
            second = np.where(drift, main, second)
            main = np.where(drift, moved, main)
        mixture = np.full((n_users, n_topics), SPREAD / n_topics)
        mixture[users, second] += 1.0 - SPREAD - main_weight
        mixture[users, main] += main_weight
        available = cat.release[None, :] <= times[:, t : t + 1]
        weights = mixture[:, cat.topic] * cat.popularity[None, :] * (available & ~seen)  # (U, I)

        loyal = rng.random(n_users) < config.brand_loyalty
        if t > 0:
            prev_brand = cat.brand[chosen[:, t - 1]]
            branded = weights * (same_brand == prev_brand[:, None])
            use_brand = loyal & (branded.sum(axis=1) > 0)
            weights = np.where(use_brand[:, None], branded, weights)

        cdf = np.cumsum(weights, axis=1)
        draw = rng.random(n_users) * cdf[:, -1]
        pick = np.minimum((cdf <= draw[:, None]).sum(axis=1), config.n_items - 1)
        active = t < lengths
        chosen[active, t] = pick[active]
        seen[users[active], pick[active]] = True

    mask = np.arange(config.max_seq_len)[None, :] < lengths[:, None]
    user_index = np.broadcast_to(users[:, None], mask.shape)[mask]
    return pd.DataFrame(
        {
            "user_id": np.char.add("u", np.char.zfill(user_index.astype(str), 5)),
            "item_id": cat.items["item_id"].to_numpy()[chosen[mask]],
            "timestamp": times[mask],
        }
    )
