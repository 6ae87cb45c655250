# Archive downloads that several studies share. Downloads are local rules (login nodes of a
# cluster reach the internet; compute nodes often do not) and land in the run-independent
# cache folder.

#: MPA-JHU DR7 release files the studies read (environment: masses and SFRs; spectra:
#: gal_info and the fibre metallicities).
MPAJHU_FILES = (
    "gal_info_dr7_v5_2.fit.gz",
    "totlgm_dr7_v5_2.fit.gz",
    "gal_totsfr_dr7_v5_2.fits.gz",
    "gal_totspecsfr_dr7_v5_2.fits.gz",
    "gal_fiboh_dr7_v5_2.fits.gz",
)

#: Cache folder of the MPA-JHU DR7 release files.
MPAJHU = f"{CACHE}/mpajhu"


rule archives_fetch_mpajhu:
    output:
        f"{MPAJHU}/{{mpajhu_file}}",
    wildcard_constraints:
        mpajhu_file="|".join(re.escape(f) for f in MPAJHU_FILES),
    params:
        config=cli_config(None),
    log:
        f"{MPAJHU}/{{mpajhu_file}}.log",
    conda:
        "../../envs/archives.yaml"
    localrule: True
    shell:
        "galforge fetch-mpajhu --config {params.config:q} --no-progress"
        " --out {output:q} > {log:q} 2>&1"
