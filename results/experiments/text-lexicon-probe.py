"""Probe, dev half only: how far does the text model itself get on the free-phrased intentions?

Text search over today's template descriptions, over descriptions with a hand-written genre
lexicon appended, and a ranking by the intention's similarity to each genre's lexicon (a
zero-shot genre guess). No iDream model involved; the output is in text-lexicon-probe.md.

    python results/experiments/text-lexicon-probe.py
"""
import sys
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from idream.data.datasets import load_dataset
from idream.text import describe, get_backend
from benchmarks import free_intentions
from benchmarks.text import matches
LEX = {
 "action": "action: fights, chases, explosions, shootouts, heroes, stunts, martial arts",
 "adventure": "adventure: quests, journeys, treasure, exploration, expeditions, pirates, jungles",
 "animation": "animation: cartoons, animated characters, drawn or computer-animated worlds",
 "children's": "for children and families: kids, talking animals, fairy tales, school-age heroes",
 "comedy": "comedy: jokes, laughs, humour, silly situations, slapstick, satire, spoofs",
 "crime": "crime: gangsters, mobsters, heists, robberies, detectives, murder, cops, the mafia, drugs",
 "documentary": "documentary: real events and real people, true stories, interviews, nature, history",
 "drama": "drama: relationships, family conflict, personal struggles, tragedy, real life",
 "fantasy": "fantasy: magic, wizards, dragons, witches, mythical creatures, enchanted kingdoms",
 "film-noir": "film noir: black and white, private eyes, femmes fatales, 1940s crime, shadows, cynicism",
 "horror": "horror: monsters, ghosts, haunted houses, vampires, zombies, slashers, demons, fear",
 "musical": "musical: songs, singing, dancing, Broadway, show tunes, song-and-dance numbers",
 "mystery": "mystery: whodunit, clues, detectives, unsolved puzzles, secrets, investigation",
 "romance": "romance: love stories, couples, dating, falling in love, weddings, passion",
 "sci-fi": "science fiction: space, aliens, robots, spaceships, the future, time travel, other planets",
 "thriller": "thriller: suspense, danger, conspiracies, chases, killers, spies, psychological tension",
 "war": "war: soldiers, battles, armies, World War II, Vietnam, combat, the military",
 "western": "western: cowboys, the wild west, outlaws, sheriffs, gunfights, frontier towns, horses",
}
ds = load_dataset("ml-100k")
be = get_backend("minilm")
def desc2(m):
    gs = [g.lower() for g in m["genres"] if g.lower() in LEX]
    return describe(m) + " " + " ".join(LEX[g] + "." for g in gs)
rows = free_intentions.load("dev")
q = be.encode([r["text"] for r in rows]); q /= np.linalg.norm(q, axis=1, keepdims=True)
ok = np.stack([matches(ds, r) for r in rows])
for name, fn in [("template", describe), ("lexicon", desc2)]:
    E = be.encode([fn(ds.item_meta(i)) for i in range(ds.n_items)]); E /= np.linalg.norm(E, axis=1, keepdims=True)
    top = np.argsort(-(q @ E.T), axis=1)[:, :10]
    print(name, np.take_along_axis(ok, top, 1).mean(), flush=True)
G = list(LEX)
L = be.encode([LEX[g] for g in G]); L /= np.linalg.norm(L, axis=1, keepdims=True)
sim = q @ L.T
pred = [G[i] for i in sim.argmax(1)]
acc = np.mean([p in {g.lower() for g in r["genres"]} for p, r in zip(pred, rows)])
print("top-1 genre from lexicon", acc)
# boost: item score = max over item genres of sim to that genre
gi = np.zeros((ds.n_items, len(G)))
for i in range(ds.n_items):
    for g in ds.item_meta(i)["genres"]:
        if g.lower() in G: gi[i, G.index(g.lower())] = 1
S = (sim[:, None, :] * gi[None]).max(2)  # (I, N)
E = be.encode([desc2(ds.item_meta(i)) for i in range(ds.n_items)]); E /= np.linalg.norm(E, axis=1, keepdims=True)
S2 = S + 0.01 * (q @ E.T)
top = np.argsort(-S2, axis=1)[:, :10]
print("genre-posterior ranking", np.take_along_axis(ok, top, 1).mean())
