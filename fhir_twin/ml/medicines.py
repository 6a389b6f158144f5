"""Medicine classes the models read from the Digital Case's medication requests.

A medication request is matched by its ATC code (WHO ATC/DDD Index, system
``http://www.whocc.no/atc``) or, for RxNorm and uncoded requests, by an ingredient in its name:
RxNorm clinical-drug names begin with their ingredients ("amLODIPine 5 MG Oral Tablet"), and this
server holds no RxNorm release to look classes up in. Products applied to the skin, eye or ear
are never systemic treatment ("Minoxidil 50 MG/ML Topical Solution", timolol eye drops).
"""

from __future__ import annotations

from dataclasses import dataclass

ATC = "http://www.whocc.no/atc"
NOT_SYSTEMIC = ("topical", "ophthalmic", "otic", "cream", "ointment", "shampoo", "eye drop", "gel")


@dataclass(frozen=True)
class MedicineClass:
    """ATC group prefixes and the ingredient names of one class of medicines."""

    name: str
    atc: tuple[str, ...]
    ingredients: tuple[str, ...]

    def matches(self, code: str | None, display: str | None) -> bool:
        system, _, value = (code or "").partition("|")
        if system == ATC and value.upper().startswith(self.atc):
            return True
        text = (display or "").lower()
        if any(word in text for word in NOT_SYSTEMIC):
            return False
        return any(ingredient in text for ingredient in self.ingredients)


# Blood-pressure-lowering medicines: the primary and secondary agents of the 2017 ACC/AHA
# guideline (Whelton PK et al., Hypertension 2018;71:e13, Tables 18 and 19) - thiazide-type, loop
# and potassium-sparing diuretics, aldosterone antagonists, ACE inhibitors, ARBs, the direct renin
# inhibitor, dihydropyridine and non-dihydropyridine calcium-channel blockers, beta blockers,
# alpha-1 blockers, central alpha-2 agonists and direct vasodilators - which are ATC groups C02
# (antihypertensives), C03 (diuretics), C07 (beta blockers), C08 (calcium-channel blockers) and C09
# (renin-angiotensin agents). The Pooled Cohort Equations' "treated" means taking any of them.
ANTIHYPERTENSIVE = MedicineClass(
    "blood-pressure-lowering medicine",
    ("C02", "C03", "C07", "C08", "C09"),
    (
        # thiazide and thiazide-like diuretics
        "hydrochlorothiazide",
        "chlorthalidone",
        "chlorothiazide",
        "indapamide",
        "metolazone",
        "bendroflumethiazide",
        # loop diuretics
        "furosemide",
        "bumetanide",
        "torsemide",
        "torasemide",
        "ethacrynic",
        # potassium-sparing diuretics and aldosterone antagonists
        "amiloride",
        "triamterene",
        "spironolactone",
        "eplerenone",
        # ACE inhibitors
        "benazepril",
        "captopril",
        "enalapril",
        "fosinopril",
        "lisinopril",
        "moexipril",
        "perindopril",
        "quinapril",
        "ramipril",
        "trandolapril",
        # angiotensin II receptor blockers (sacubitril/valsartan included)
        "azilsartan",
        "candesartan",
        "eprosartan",
        "irbesartan",
        "losartan",
        "olmesartan",
        "telmisartan",
        "valsartan",
        # direct renin inhibitor
        "aliskiren",
        # calcium-channel blockers
        "amlodipine",
        "felodipine",
        "isradipine",
        "nicardipine",
        "nifedipine",
        "nisoldipine",
        "lercanidipine",
        "diltiazem",
        "verapamil",
        # beta blockers
        "acebutolol",
        "atenolol",
        "betaxolol",
        "bisoprolol",
        "carvedilol",
        "labetalol",
        "metoprolol",
        "nadolol",
        "nebivolol",
        "pindolol",
        "propranolol",
        # alpha-1 blockers
        "doxazosin",
        "prazosin",
        "terazosin",
        # central alpha-2 agonists
        "clonidine",
        "guanfacine",
        "methyldopa",
        "moxonidine",
        # direct vasodilators
        "hydralazine",
        "minoxidil",
    ),
)

# Antibacterials for systemic use (ATC J01), for qSOFA's "suspected infection": Seymour et al.
# (JAMA 2016;315:762) took antibiotics with body-fluid cultures as the sign of it. Antivirals and
# antifungals are left out: long-term antiretroviral or prophylactic treatment is not a new
# suspicion of infection.
ANTIBACTERIAL = MedicineClass(
    "antibacterial",
    ("J01",),
    (
        "amoxicillin",
        "ampicillin",
        "penicillin",
        "flucloxacillin",
        "dicloxacillin",
        "nafcillin",
        "oxacillin",
        "piperacillin",
        "cefalexin",
        "cephalexin",
        "cefaclor",
        "cefadroxil",
        "cefazolin",
        "cefdinir",
        "cefepime",
        "cefixime",
        "cefotaxime",
        "cefpodoxime",
        "cefprozil",
        "ceftaroline",
        "ceftazidime",
        "ceftriaxone",
        "cefuroxime",
        "meropenem",
        "imipenem",
        "ertapenem",
        "aztreonam",
        "vancomycin",
        "teicoplanin",
        "daptomycin",
        "linezolid",
        "gentamicin",
        "amikacin",
        "tobramycin",
        "ciprofloxacin",
        "levofloxacin",
        "moxifloxacin",
        "ofloxacin",
        "azithromycin",
        "clarithromycin",
        "erythromycin",
        "doxycycline",
        "minocycline",
        "tetracycline",
        "tigecycline",
        "clindamycin",
        "metronidazole",
        "trimethoprim",
        "sulfamethoxazole",
        "nitrofurantoin",
        "fosfomycin",
        "rifampicin",
        "rifampin",
        "colistin",
    ),
)
