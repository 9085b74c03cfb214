"""A deterministic generator of a CMS-like inventory at a chosen scale.

Everything derives from (scale, seed): the same arguments give the same
inventory, byte for byte.  Each dataset is a pure function of its index (it
has its own random stream), so any prefix of the inventory can be produced
without the rest: the injection benchmark sends the first datasets as
documents for `dynamo-inject`, and the raw-SQLite limit inserts exactly their
rows.

The mix follows the CMS installation the original Dynamo served: ~100 sites
(T1_/T2_/T3_), ~20 groups, datasets named /PrimaryDataset/Era-Processing-vN/TIER,
blocks named by UUID (full name `dataset#uuid`), files with CMS LFNs of
1-4 GB, each dataset replicated at 1-4 sites, some block replicas incomplete
(holding a subset of their block's files).

Two outputs:
- a SQLite store with the daemon's own schema and tables (`dynamod --database
  FILE` loads it; `next_ids` is filled), and
- injection documents: JSON files of about `files_per_doc` files each, the
  first one holding the sites and groups.

    python -m bench.generator --scale medium --store /tmp/inventory.db
    python -m bench.generator --scale small --documents /tmp/docs
"""

import argparse
import os
import random
import sqlite3
import sys
import time
from dataclasses import dataclass
from importlib import resources
from typing import NamedTuple

import orjson

from dynamod.store.sqlite import SCHEMA_VERSION
from dynamod.store.tables import BY_KIND, INVENTORY_KINDS


@dataclass(frozen=True)
class Scale:
    name: str
    sites: int
    groups: int
    datasets: int
    blocks_mean: float     # blocks per dataset (1 + exponential)
    blocks_max: int
    files_mean: float      # files per block (1 + exponential)
    files_max: int


# medium is one tenth of cms with the same mix (same sites and groups).
SCALES = {
    "small": Scale("small", sites=5, groups=3, datasets=50, blocks_mean=3, blocks_max=10,
                   files_mean=4, files_max=20),
    "medium": Scale("medium", sites=100, groups=20, datasets=24_000, blocks_mean=8,
                    blocks_max=400, files_mean=12, files_max=500),
    "cms": Scale("cms", sites=100, groups=20, datasets=240_000, blocks_mean=8,
                 blocks_max=400, files_mean=12, files_max=500),
}

# --------------------------------------------------------------- vocabulary
DATA_PDS = (
    "DoubleMuon", "SingleMuon", "DoubleEG", "SingleElectron", "MuonEG", "JetHT", "HTMHT", "MET",
    "Tau", "BTagCSV", "BTagMu", "DisplacedJet", "Charmonium", "MuOnia", "ZeroBias",
    "MinimumBias", "EGamma", "SinglePhoton", "DoublePhoton", "NoBPTX", "HLTPhysics",
    "HighMultiplicity", "ParkingBPH1", "ParkingBPH2", "Commissioning", "Cosmics",
    "ScoutingCaloMuon", "AlCaLumiPixels", "EphemeralHLTPhysics", "DoubleMuonLowMass",
)
MC_PDS = tuple(f"{process}_TuneCP5_13TeV-{generator}" for process, generator in (
    ("QCD_Pt-15to30", "pythia8"), ("QCD_Pt-30to50", "pythia8"), ("QCD_Pt-50to80", "pythia8"),
    ("QCD_Pt-80to120", "pythia8"), ("QCD_Pt-120to170", "pythia8"),
    ("QCD_Pt-170to300", "pythia8"), ("QCD_HT300to500", "madgraphMLM-pythia8"),
    ("QCD_HT500to700", "madgraphMLM-pythia8"), ("QCD_HT700to1000", "madgraphMLM-pythia8"),
    ("TTJets", "madgraphMLM-pythia8"), ("TTToSemiLeptonic", "powheg-pythia8"),
    ("TTTo2L2Nu", "powheg-pythia8"), ("TTToHadronic", "powheg-pythia8"),
    ("WJetsToLNu", "madgraphMLM-pythia8"), ("W1JetsToLNu", "madgraphMLM-pythia8"),
    ("DYJetsToLL_M-50", "amcatnloFXFX-pythia8"), ("DYJetsToLL_M-10to50", "madgraphMLM-pythia8"),
    ("ZZTo4L", "powheg-pythia8"), ("WZTo3LNu", "powheg-pythia8"), ("WWTo2L2Nu", "powheg-pythia8"),
    ("ST_t-channel_top_4f", "powheg-pythia8"), ("ST_tW_top_5f", "powheg-pythia8"),
    ("GluGluHToGG_M125", "powheg-pythia8"), ("VBFHToTauTau_M125", "powheg-pythia8"),
    ("GluGluHToZZTo4L_M125", "powheg2-JHUGenV7011-pythia8"), ("ttHTobb_M125", "powheg-pythia8"),
    ("ZprimeToTT_M2000_W20", "madgraph-pythia8"), ("SMS-T1tttt", "madgraphMLM-pythia8"),
    ("GJets_HT-400To600", "madgraphMLM-pythia8"), ("MinBias", "pythia8"),
))
DATA_ERAS = tuple(f"Run{year}{letter}" for year in (2015, 2016, 2017, 2018)
                  for letter in "BCDEFG")
MC_ERAS = tuple(f"RunII{campaign}{step}"
                for campaign in ("Summer16", "Fall17", "Autumn18", "Spring16", "Fall15",
                                 "Summer19UL17")
                for step in ("MiniAODv2", "DRPremix", "NanoAODv4", "wmLHEGS"))
DATA_PROCESSING = ("31Mar2018", "17Nov2017", "PromptReco", "07Aug17", "03Feb2017",
                   "12Nov2019_UL2018", "09Aug2019_UL2017", "17Sep2018", "22Jan2019",
                   "05Feb2018", "23Sep2016", "HIPM_UL2016_MiniAODv2")
MC_PROCESSING = ("PU2017_12Apr2018_94X_mc2017_realistic_v14", "94X_mc2017_realistic_v10",
                 "PUMoriond17_80X_mcRun2_asymptotic_2016_TrancheIV_v6",
                 "102X_upgrade2018_realistic_v15", "PU2017_12Apr2018_new_pmx_94X_mc2017_realistic_v14",
                 "106X_mc2017_realistic_v6", "NoPU_94X_mc2017_realistic_v11",
                 "80X_mcRun2_asymptotic_2016_TrancheIV_v8", "FlatPU0to70_102X_upgrade2018_realistic_v15",
                 "PUFall17Fast_94X_mc2017_realistic_v15", "106X_upgrade2018_realistic_v11_L1v1",
                 "PU2016_14Dec2018_102X_mcRun2_asymptotic_v7")
DATA_TIERS = ("RAW", "AOD", "MINIAOD", "NANOAOD", "RECO", "USER", "ALCARECO", "DQMIO")
MC_TIERS = ("GEN-SIM", "GEN-SIM-RAW", "AODSIM", "MINIAODSIM", "NANOAODSIM", "GEN-SIM-DIGI-RAW",
            "GEN", "DQMIO")
VERSIONS = 4
# Mixed radix of a dataset name; a permutation of [0, NAME_SPACE) names datasets uniquely.
RADIX = (len(DATA_PDS) + len(MC_PDS), len(DATA_ERAS), len(DATA_PROCESSING), VERSIONS,
         len(DATA_TIERS))
NAME_SPACE = 1
for _r in RADIX:
    NAME_SPACE *= _r
NAME_STRIDE = 1_000_003  # prime, so i -> (i * stride + offset) % NAME_SPACE is a bijection

GROUPS = ("AnalysisOps", "DataOps", "FacOps", "RelVal", "IB_RelVal", "b-physics", "b-tagging",
          "e-gamma_ecal", "exotica", "forward", "higgs", "jets-met_hcal", "muon", "local",
          "susy", "tau-pflow", "top", "tracker-dpg", "upgrade", "trigger")

T1_SITES = ("US_FNAL", "DE_KIT", "ES_PIC", "FR_CCIN2P3", "IT_CNAF", "RU_JINR", "UK_RAL")
T2_SITES = (
    "US_MIT", "US_Nebraska", "US_Purdue", "US_Wisconsin", "US_Caltech", "US_UCSD", "US_Florida",
    "US_Vanderbilt", "DE_DESY", "DE_RWTH", "IT_Bari", "IT_Legnaro", "IT_Pisa", "IT_Rome",
    "FR_GRIF_LLR", "FR_GRIF_IRFU", "FR_IPHC", "FR_CCIN2P3", "UK_London_Brunel", "UK_London_IC",
    "UK_SGrid_RALPP", "UK_SGrid_Bristol", "CH_CSCS", "CH_CERN", "ES_CIEMAT", "ES_IFCA",
    "RU_JINR", "RU_ITEP", "RU_INR", "RU_IHEP", "BE_IIHE", "BE_UCL", "BR_SPRACE", "BR_UERJ",
    "CN_Beijing", "IN_TIFR", "KR_KISTI", "KR_KNU", "PL_Swierk", "PL_Warsaw", "PT_NCG_Lisbon",
    "TR_METU", "TW_NCHC", "HU_Budapest", "EE_Estonia", "FI_HIP", "GR_Ioannina", "AT_Vienna",
    "PK_NCP", "UA_KIPT", "US_UCSB", "IT_Trieste", "DE_KIT", "CH_PSI", "UK_GridPP_RAL",
    "RU_PNPI", "IT_Napoli", "ES_PIC")
T3_SITES = (
    "US_FNALLPC", "US_Baylor", "US_Rice", "US_Brown", "US_Colorado", "US_Cornell", "US_FIT",
    "US_FSU", "US_JHU", "US_Kansas", "US_Minnesota", "US_NotreDame", "US_OSU", "US_Princeton",
    "US_Rutgers", "US_TAMU", "US_TTU", "US_UCD", "US_UCR", "US_UMD", "US_UMiss", "US_UVA",
    "IT_Trieste", "IT_Bologna", "IT_Firenze", "IT_Perugia", "CH_PSI", "CH_CERN_CAF",
    "UK_London_QMUL", "UK_SGrid_Oxford", "KR_KNU", "TW_NTU_HEP", "GR_IASA", "FR_IPNL",
    "DE_Aachen_3A")

YEAR_2015 = 1420070400
YEAR_2020 = 1577836800


# -------------------------------------------------------------- the model
class FileSpec(NamedTuple):
    lfn: str
    size: int
    adler32: str


class BlockSpec(NamedTuple):
    name: str
    is_open: bool
    last_update: int
    files: list           # FileSpec


class BlockReplicaSpec(NamedTuple):
    block: int            # index in the dataset's blocks
    is_custodial: bool
    last_update: int
    files: list | None    # indexes of the files present; None: complete


class ReplicaSpec(NamedTuple):
    site: int             # index in the site list
    growing: bool
    group: int | None     # index in the group list; None: the null group
    blockreplicas: list   # BlockReplicaSpec


class DatasetSpec(NamedTuple):
    index: int
    name: str
    status: str
    data_type: str
    software_version: str
    last_update: int
    is_open: bool
    blocks: list          # BlockSpec
    replicas: list        # ReplicaSpec


class SiteSpec(NamedTuple):
    name: str
    host: str
    storage_type: str
    backend: str
    status: str
    weight: float         # how often it holds a replica


def _uuid(rng, upper=False) -> str:
    s = f"{rng.getrandbits(128):032X}" if upper else f"{rng.getrandbits(128):032x}"
    return f"{s[:8]}-{s[8:12]}-{s[12:16]}-{s[16:20]}-{s[20:]}"


def _all_site_names() -> list[tuple[str, str]]:
    """Every site name (T1 disk and tape endpoints, T2s, T3s) with its storage type."""
    names = []
    for t1 in T1_SITES:
        names.append((f"T1_{t1}_Disk", "disk"))
        names.append((f"T1_{t1}_MSS", "mss"))
    names += [(f"T2_{n}", "disk") for n in T2_SITES]
    names += [(f"T3_{n}", "disk") for n in T3_SITES]
    return names


class Generator:
    """The inventory of one (scale, seed)."""

    def __init__(self, scale: Scale | str, seed: int = 1):
        self.scale = SCALES[scale] if isinstance(scale, str) else scale
        self.seed = seed
        if self.scale.datasets > NAME_SPACE:
            raise ValueError(f"at most {NAME_SPACE} datasets can be named")
        self.sites = self._sites()
        self.groups = self._groups()
        self._site_weights = [s.weight for s in self.sites]
        self._name_offset = random.Random(seed).randrange(NAME_SPACE)

    # ---------------------------------------------------------- globals
    def _sites(self) -> list[SiteSpec]:
        rng = random.Random(f"sites-{self.seed}")
        everything = _all_site_names()
        t1 = [n for n in everything if n[0].startswith("T1_")]
        t2 = [n for n in everything if n[0].startswith("T2_")]
        t3 = [n for n in everything if n[0].startswith("T3_")]
        n = self.scale.sites
        if n > len(everything):
            raise ValueError(f"at most {len(everything)} sites can be named")
        # the tiers' proportions: ~14% T1 endpoints, ~56% T2, ~30% T3
        k1 = min(len(t1), max(1, round(n * 0.14)))
        k3 = min(len(t3), max(1, round(n * 0.30)) if n > 2 else 0)
        k2 = min(len(t2), n - k1 - k3)
        chosen = t1[:k1] + t2[:k2] + t3[:n - k1 - k2]
        sites = []
        for name, storage in chosen:
            inst = name.split("_", 2)[2].lower().replace("_", "-")
            host = f"{rng.choice(('se', 'srm', 'eos', 'dcache', 'xrootd'))}{rng.randrange(1, 9):02d}.{inst}.org"
            scheme = rng.choice(("gsiftp://{h}:2811/cms", "davs://{h}:1094/store/cms",
                                 "srm://{h}:8443/srm/v2/server?SFN=/mnt/hadoop/cms"))
            status = "ready" if rng.random() < 0.93 else rng.choice(("waitroom", "morgue"))
            weight = 5.0 if name.startswith("T1_") else 2.0 if name.startswith("T2_") else 0.5
            sites.append(SiteSpec(name, host, storage, scheme.format(h=host), status, weight))
        return sites

    def _groups(self) -> list[tuple[str, str]]:
        rng = random.Random(f"groups-{self.seed}")
        return [(g, "Dataset" if rng.random() < 0.2 else "Block")
                for g in GROUPS[:self.scale.groups]]

    # ---------------------------------------------------------- datasets
    def _name(self, i: int) -> tuple[str, str, bool, str, str]:
        """The dataset's name, its LFN directory, whether it is MC, its era and tier."""
        p = (i * NAME_STRIDE + self._name_offset) % NAME_SPACE
        digits = []
        for radix in reversed(RADIX):
            p, d = divmod(p, radix)
            digits.append(d)
        pd, era, proc, version, tier = reversed(digits)
        mc = pd >= len(DATA_PDS)
        if mc:
            primary, era_name = MC_PDS[pd - len(DATA_PDS)], MC_ERAS[era]
            processing, tier_name = MC_PROCESSING[proc], MC_TIERS[tier]
        else:
            primary, era_name = DATA_PDS[pd], DATA_ERAS[era]
            processing, tier_name = DATA_PROCESSING[proc], DATA_TIERS[tier]
        version = f"v{version + 1}"
        name = f"/{primary}/{era_name}-{processing}-{version}/{tier_name}"
        lfn_dir = (f"/store/{'mc' if mc else 'data'}/{era_name}/{primary}/{tier_name}/"
                   f"{processing}-{version}")
        return name, lfn_dir, mc, era_name, tier_name

    def dataset_name(self, i: int) -> str:
        """The name of dataset number i (without generating its content)."""
        return self._name(i)[0]

    def dataset(self, i: int) -> DatasetSpec:
        """Dataset number i (0-based), its blocks, files and replicas."""
        scale = self.scale
        rng = random.Random(self.seed * 1_000_000_007 + i)
        name, lfn_dir, mc, _, _ = self._name(i)
        last_update = rng.randrange(YEAR_2015, YEAR_2020)
        is_open = rng.random() < 0.05
        r = rng.random()
        status = ("valid" if r < 0.85 else "production" if r < 0.95
                  else "invalid" if r < 0.98 else "deprecated")
        data_type = "test" if rng.random() < 0.02 else "production"
        software = f"CMSSW_{rng.randrange(7, 11)}_{rng.randrange(0, 7)}_{rng.randrange(0, 20)}"
        nblocks = min(scale.blocks_max, 1 + int(rng.expovariate(1 / (scale.blocks_mean - 0.5))))
        blocks = []
        getrandbits, randrange = rng.getrandbits, rng.randrange
        for b in range(nblocks):
            nfiles = min(scale.files_max, 1 + int(rng.expovariate(1 / (scale.files_mean - 0.5))))
            subdir = f"{lfn_dir}/{randrange(10, 100) * 10000}/"
            files = []
            for _ in range(nfiles):
                s = f"{getrandbits(128):032X}"
                files.append(FileSpec(
                    f"{subdir}{s[:8]}-{s[8:12]}-{s[12:16]}-{s[16:20]}-{s[20:]}.root",
                    1_000_000_000 + randrange(3_000_000_001), f"{getrandbits(32):08x}"))
            blocks.append(BlockSpec(_uuid(rng), is_open and b == nblocks - 1,
                                    last_update - randrange(0, 86400 * 30), files))
        r = rng.random()
        nreplicas = 1 if r < 0.50 else 2 if r < 0.78 else 3 if r < 0.92 else 4
        nreplicas = min(nreplicas, len(self.sites))
        sites = []
        while len(sites) < nreplicas:
            site = rng.choices(range(len(self.sites)), self._site_weights)[0]
            if site not in sites:
                sites.append(site)
        replicas = []
        for k, site in enumerate(sites):
            group = None if rng.random() < 0.1 else rng.randrange(len(self.groups))
            custodial = self.sites[site].storage_type == "mss"
            brs = []
            for b, block in enumerate(blocks):
                if k > 0 and rng.random() >= 0.85 and len(brs) + (nblocks - b) > 1:
                    continue  # a later replica holds most blocks, never none
                files = None
                if rng.random() < (0.02 if k == 0 else 0.10):
                    n = len(block.files)
                    files = sorted(rng.sample(range(n), rng.randrange(n)))
                brs.append(BlockReplicaSpec(b, custodial, block.last_update + rng.randrange(86400),
                                            files))
            replicas.append(ReplicaSpec(site, k > 0, group, brs))
        return DatasetSpec(i, name, status, data_type, software, last_update, is_open, blocks,
                           replicas)

    def datasets(self, count: int | None = None):
        for i in range(self.scale.datasets if count is None else count):
            yield self.dataset(i)

    # ------------------------------------------------------------ rows
    def rows(self, count: int | None = None, flush_every: int = 200_000):
        """The store rows of the sites, groups and the first `count` datasets, as batches
        {kind: [row, ...]} of about `flush_every` files (ids assigned from 1, in order)."""
        builder = RowBuilder(self)
        yield builder.take()
        for spec in self.datasets(count):
            builder.add(spec)
            if builder.pending_files >= flush_every:
                yield builder.take()
        yield builder.take()

    # ------------------------------------------------------- documents
    def document(self, spec: DatasetSpec) -> tuple[dict, list]:
        """The injection entries of one dataset: its `dataset` item and `datasetreplica` items."""
        blocks = []
        for b in spec.blocks:
            blocks.append({"name": b.name, "size": sum(f.size for f in b.files),
                           "num_files": len(b.files), "is_open": b.is_open,
                           "last_update": b.last_update,
                           "files": [{"name": f.lfn, "size": f.size, "adler32": f.adler32}
                                     for f in b.files]})
        dataset = {"name": spec.name, "status": spec.status, "data_type": spec.data_type,
                   "software_version": spec.software_version, "last_update": spec.last_update,
                   "is_open": spec.is_open, "blocks": blocks}
        replicas = []
        for r in spec.replicas:
            group = None if r.group is None else self.groups[r.group][0]
            brs = []
            for br in r.blockreplicas:
                block = spec.blocks[br.block]
                item = {"block": block.name, "group": group, "is_custodial": br.is_custodial,
                        "last_update": br.last_update}
                if br.files is None:
                    item["size"] = sum(f.size for f in block.files)
                else:
                    item["files"] = [block.files[j].lfn for j in br.files]
                    item["size"] = sum(block.files[j].size for j in br.files)
                brs.append(item)
            replicas.append({"dataset": spec.name, "site": self.sites[r.site].name,
                             "growing": r.growing, "group": group, "blockreplicas": brs})
        return dataset, replicas

    def header_document(self) -> dict:
        return {"site": [{"name": s.name, "host": s.host, "storage_type": s.storage_type,
                          "backend": s.backend, "status": s.status} for s in self.sites],
                "group": [{"name": g, "olevel": o} for g, o in self.groups]}

    def write_documents(self, directory: str, max_files: int | None = None,
                        files_per_doc: int = 50_000, first: int = 0) -> dict:
        """Injection documents for the first datasets holding at least `max_files` files
        (all of them when None).  Returns the paths and the counts they create.

        With `first` > 0 the documents start at dataset number `first` and hold no
        sites or groups (those of the inventory are taken as there); from the
        inventory's end on (`first` >= its datasets) they hold datasets it does not
        have, for injections into a daemon that holds the store already ("next" in
        the result: the number where the next such documents can start)."""
        os.makedirs(directory, exist_ok=True)
        paths, counts = [], dict.fromkeys(INVENTORY_KINDS, 0)
        if first == 0:
            counts["site"], counts["group"] = len(self.sites), len(self.groups)

        def flush(doc):
            path = os.path.join(directory, f"inject-{len(paths):05d}.json")
            with open(path, "wb") as f:
                f.write(orjson.dumps(doc))
            paths.append(path)

        if first == 0:
            flush(self.header_document())
        doc, in_doc = {"dataset": [], "datasetreplica": []}, 0
        end = self.scale.datasets if first < self.scale.datasets else NAME_SPACE
        number = first
        for number in range(first, end):
            if max_files is not None and counts["file"] >= max_files:
                break
            spec = self.dataset(number)
            dataset, replicas = self.document(spec)
            doc["dataset"].append(dataset)
            doc["datasetreplica"].extend(replicas)
            nfiles = sum(len(b.files) for b in spec.blocks)
            in_doc += nfiles
            _count(counts, spec, nfiles)
            if in_doc >= files_per_doc:
                flush(doc)
                doc, in_doc = {"dataset": [], "datasetreplica": []}, 0
        else:
            number = end
        if doc["dataset"]:
            flush(doc)
        return {"paths": paths, "counts": counts, "next": max(number, self.scale.datasets)}

    def prefix_for_files(self, max_files: int | None) -> int:
        """How many datasets write_documents(max_files=...) takes."""
        if max_files is None:
            return self.scale.datasets
        files = 0
        for i in range(self.scale.datasets):
            if files >= max_files:
                return i
            files += sum(len(b.files) for b in self.dataset(i).blocks)
        return self.scale.datasets

    # ------------------------------------------------------------- store
    def write_store(self, path: str, progress=None) -> dict:
        """Write the whole inventory into a new SQLite file with the daemon's schema."""
        if os.path.exists(path):
            raise FileExistsError(path)
        db = sqlite3.connect(path, isolation_level=None)
        try:
            create_schema(db)
            db.execute("PRAGMA journal_mode = OFF")
            db.execute("PRAGMA synchronous = OFF")
            db.execute("PRAGMA cache_size = -2000000")  # 2 GB: the LFN index stays in memory
            counts = dict.fromkeys(INVENTORY_KINDS, 0)
            db.execute("BEGIN")
            started = time.monotonic()
            next_ids = None
            for batch in self.rows():
                insert_rows(db, batch)
                for kind, rows in batch.items():
                    counts[kind] += len(rows)
                if progress:
                    progress(counts, time.monotonic() - started)
            next_ids = {"site": counts["site"] + 1, "group": counts["group"] + 1,
                        "dataset": counts["dataset"] + 1, "block": counts["block"] + 1,
                        "file": counts["file"] + 1}
            db.executemany("INSERT INTO next_ids (kind, next_id) VALUES (?, ?)",
                           list(next_ids.items()))
            db.execute("COMMIT")
            db.execute("PRAGMA journal_mode = WAL")
        finally:
            db.close()
        return counts


def _count(counts, spec, nfiles):
    counts["dataset"] += 1
    counts["block"] += len(spec.blocks)
    counts["file"] += nfiles
    counts["datasetreplica"] += len(spec.replicas)
    counts["blockreplica"] += sum(len(r.blockreplicas) for r in spec.replicas)


class RowBuilder:
    """Turns dataset specs into store rows, assigning ids in order (as the daemon would)."""

    def __init__(self, gen: Generator):
        self.gen = gen
        self.batch = {kind: [] for kind in INVENTORY_KINDS}
        self.pending_files = 0
        self.next_block = self.next_file = 1
        for i, s in enumerate(gen.sites, 1):
            self.batch["site"].append((i, s.name, s.host, s.storage_type, s.backend, s.status))
        for i, (name, olevel) in enumerate(gen.groups, 1):
            self.batch["group"].append((i, name, olevel))

    def add(self, spec: DatasetSpec):
        batch = self.batch
        did = spec.index + 1
        batch["dataset"].append((did, spec.name, spec.status, spec.data_type,
                                 spec.software_version, spec.last_update, int(spec.is_open)))
        block_ids, file_ids, sizes = [], [], []
        files_rows = batch["file"]
        for b in spec.blocks:
            bid = self.next_block
            self.next_block += 1
            fid0 = self.next_file
            self.next_file += len(b.files)
            size = 0
            for k, f in enumerate(b.files):
                files_rows.append((fid0 + k, bid, f.lfn, f.size, f.adler32, None, None))
                size += f.size
            batch["block"].append((bid, did, b.name, size, len(b.files), int(b.is_open),
                                   b.last_update))
            block_ids.append(bid)
            file_ids.append(fid0)
            sizes.append(size)
            self.pending_files += len(b.files)
        for r in spec.replicas:
            sid = r.site + 1
            gid = None if r.group is None else r.group + 1
            batch["datasetreplica"].append((did, sid, int(r.growing), gid))
            for br in r.blockreplicas:
                block = spec.blocks[br.block]
                if br.files is None:
                    size, ids = sizes[br.block], None
                else:
                    fid0 = file_ids[br.block]
                    size = sum(block.files[j].size for j in br.files)
                    ids = orjson.dumps([fid0 + j for j in br.files]).decode()
                batch["blockreplica"].append((block_ids[br.block], sid, gid, int(br.is_custodial),
                                              size, br.last_update, ids))

    def take(self) -> dict:
        batch = self.batch
        self.batch = {kind: [] for kind in INVENTORY_KINDS}
        self.pending_files = 0
        return batch


def create_schema(db: sqlite3.Connection):
    """The daemon's schema, exactly as its store creates it."""
    ddl = resources.files("dynamod.store").joinpath("schema.sql").read_text()
    db.executescript(f"BEGIN; {ddl}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")


def insert_sql(kind: str) -> str:
    table = BY_KIND[kind]
    return (f"INSERT INTO {table.name} ({', '.join(table.columns)}) "
            f"VALUES ({', '.join('?' for _ in table.columns)})")


def insert_rows(db: sqlite3.Connection, batch: dict):
    for kind in INVENTORY_KINDS:
        if batch.get(kind):
            db.executemany(insert_sql(kind), batch[kind])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.generator",
                                     description="Generate a CMS-like inventory.")
    parser.add_argument("--scale", choices=SCALES, default="small")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--store", metavar="FILE", help="write a SQLite store (a new file)")
    parser.add_argument("--documents", metavar="DIR", help="write injection documents")
    parser.add_argument("--max-files", type=int, help="documents: stop after this many files")
    parser.add_argument("--files-per-doc", type=int, default=50_000)
    parser.add_argument("--first", type=int, default=0,
                        help="documents: start at this dataset number (past the scale's "
                             "datasets: datasets the inventory does not have)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if not args.store and not args.documents:
        parser.error("give --store FILE and/or --documents DIR")
    gen = Generator(args.scale, args.seed)
    output = {}
    if args.store:
        def progress(counts, elapsed):
            sys.stderr.write(f"\r{counts['dataset']} datasets, {counts['file']} files, "
                             f"{elapsed:.0f} s ")
        started = time.monotonic()
        counts = gen.write_store(args.store, progress if sys.stderr.isatty() else None)
        output["store"] = {"path": args.store, "counts": counts,
                           "seconds": time.monotonic() - started}
        if not args.json:
            print(f"store {args.store}: {counts} in {time.monotonic() - started:.1f} s")
    if args.documents:
        result = gen.write_documents(args.documents, args.max_files, args.files_per_doc,
                                     args.first)
        output["documents"] = result
        if not args.json:
            print(f"{len(result['paths'])} documents in {args.documents}: {result['counts']}")
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(output) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
