#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gpu.h"

enum {
    OPT_DEVICE = 1000, OPT_DTYPE, OPT_ROWS, OPT_COLS, OPT_ITERS, OPT_WARMUP,
    OPT_SEED, OPT_SCALE, OPT_CSV, OPT_SAVE, OPT_LOAD, OPT_HELP, OPT_SWEEP,
    OPT_BATCH, OPT_HEADS, OPT_KV_HEADS, OPT_SEQ, OPT_DIM, OPT_CAUSAL,
    OPT_SEQ_Q, OPT_SEQ_KV, OPT_DECODE, OPT_KERNEL,
    OPT_STAGE0 = 2000, /* the stage's own options: OPT_STAGE0 + index */
};

/* Largest accepted dimension: keeps every product of two of them inside
 * 64-bit arithmetic; whether the data fits in memory is checked later. */
#define CLI_MAX_DIM ((1LL << 31) - 1)

int cli_parse_count(const char *s, long long max, long long *out)
{
    if (!s || !*s) return -1;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9') return -1; /* rejects signs, spaces, "1e3" */
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v <= 0 || v > max) return -1;
    *out = v;
    return 0;
}

static void usage(const cli_spec_t *spec, const cli_opt_t *stage_opts, int nstage, FILE *f)
{
    fprintf(f, "usage: %s [options]\n%s\n\noptions:\n", spec->prog, spec->summary);
    fprintf(f,
            "  --device auto|cpu|gpu  where to run (auto: the GPU when one is usable)\n"
            "  --dtype fp32|fp16|bf16 storage type of inputs and outputs (arithmetic is fp32)\n");
    if (spec->kind == CLI_SOFTMAX)
        fprintf(f,
                "  --rows N, --cols N     matrix shape; softmax runs along each row\n"
                "  --sweep                run cols = 1024, 2048, ..., 1048576 at the same\n"
                "                         rows x cols as the chosen (or default) shape\n"
                "  --scale S              logits are S * U[-1, 1) (default 1); large S shows overflow\n");
    else
        fprintf(f,
                "  --batch B, --heads H   batch size and query heads\n"
                "  --seq N, --dim D       sequence length (queries and keys) and head dimension\n"
                "  --seq-q N, --seq-kv N  query rows and keys separately\n"
                "  --decode               one query row per head (Nq = 1) against --seq-kv keys\n"
                "  --causal               mask keys after the query, aligned bottom-right: query i\n"
                "                         sees keys j <= i + seq_kv - seq_q\n"
                "  --kernel A,B           run only these implementations (names as in the table)\n"
                "  --sweep                run N = 1024 ... 16384 at B*N = 16384 tokens\n"
                "  --scale S              inputs are S * U[-1, 1) (default 1)\n");
    for (int i = 0; i < nstage; i++) {
        char head[64];
        snprintf(head, sizeof head, "--%s%s%s", stage_opts[i].name, stage_opts[i].arg ? " " : "",
                 stage_opts[i].arg ? stage_opts[i].arg : "");
        fprintf(f, "  %-22s %s\n", head, stage_opts[i].help);
    }
    fprintf(f,
            "  --iters N              timed runs; the median is reported (default 20 GPU, 5 CPU)\n"
            "  --warmup N             untimed runs first (default 3 GPU, 1 CPU)\n"
            "  --seed N               random seed (printed with every run)\n"
            "  --csv FILE             append the table rows to FILE, with an environment stamp\n"
            "  --save-npy DIR         write the input and each output as .npy files in DIR (each\n"
            "                         file under a temporary name, renamed when the run completes)\n"
            "  --load-npy DIR         read the input from DIR (float32 .npy) instead of generating it;\n"
            "                         a finite value the storage type cannot hold (7e4 in fp16) is\n"
            "                         refused, with its index, before any work: stored as inf it\n"
            "                         would change the problem the run claims to solve\n"
            "  --help                 this text\n");
    if (spec->extra_help) fprintf(f, "\n%s", spec->extra_help);
}

int cli_opt_given(const opts_t *o, const char *name)
{
    for (int i = 0; i < o->nopts; i++)
        if (!strcmp(o->opts[i].name, name)) return (o->opt_given >> i) & 1u;
    return 0;
}

long long cli_opt_value(const opts_t *o, const char *name)
{
    for (int i = 0; i < o->nopts; i++)
        if (!strcmp(o->opts[i].name, name)) return ((o->opt_given >> i) & 1u) ? o->opt_val[i] : 0;
    return 0;
}

static int bad(FILE *err, const char *prog, const char *opt, const char *val, const char *want)
{
    fprintf(err, "%s: invalid value '%s' for %s: expected %s\n", prog, val, opt, want);
    return 2;
}

/* A seed: decimal digits, or 0x and hex digits; nothing else (strtoull alone
 * would skip spaces, take a sign and wrap " -1" to 2^64-1, and read "010" as
 * octal 8). */
static int parse_seed(const char *s, uint64_t *out)
{
    int base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    if (!*s) return -1;
    for (const char *p = s; *p; p++) {
        const int dig = *p >= '0' && *p <= '9';
        const int hex = (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F');
        if (!dig && !(base == 16 && hex)) return -1;
    }
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, base);
    if (errno || *end) return -1;
    *out = (uint64_t)v;
    return 0;
}

/* An option that names a path: not empty, not longer than CLI_PATH_MAX. */
static int check_path_text(FILE *err, const char *P, const char *opt, const char *path, const char *what)
{
    if (!*path) {
        fprintf(err, "%s: %s needs a %s name, not an empty string\n", P, opt, what);
        return 2;
    }
    const size_t n = strlen(path);
    if (n > CLI_PATH_MAX) {
        fprintf(err, "%s: %s '%.40s...' is %zu characters long, longer than the %d accepted\n", P, opt, path, n,
                CLI_PATH_MAX);
        return 2;
    }
    return 0;
}

/* --csv FILE: the file can be created or appended to. Opened for append and
 * closed (O_NONBLOCK: a FIFO without a reader fails instead of hanging); a
 * file that did not exist is removed again, so a run that fails later leaves
 * no empty CSV behind. */
static int check_csv(FILE *err, const char *P, const char *path)
{
    struct stat st;
    const int existed = stat(path, &st) == 0;
    if (existed && S_ISDIR(st.st_mode)) {
        fprintf(err, "%s: --csv '%s' is a directory; give a file name\n", P, path);
        return 2;
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK, 0666);
    if (fd < 0) {
        fprintf(err, "%s: --csv '%s' cannot be written: %s\n", P, path, strerror(errno));
        return 2;
    }
    close(fd);
    if (!existed) unlink(path);
    return 0;
}

/* --save-npy DIR: an existing directory must take a new file (one is created
 * and removed); a missing one must be creatable (one level, as the drivers'
 * ensure_dir), and is removed again until the run writes into it. */
static int check_save_dir(FILE *err, const char *P, const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            fprintf(err, "%s: --save-npy '%s' exists and is not a directory\n", P, path);
            return 2;
        }
        char probe[CLI_PATH_MAX + 32];
        snprintf(probe, sizeof probe, "%s/.stf-write-check-XXXXXX", path);
        int fd = mkstemp(probe);
        if (fd < 0) {
            fprintf(err, "%s: --save-npy '%s': cannot write files in it: %s\n", P, path, strerror(errno));
            return 2;
        }
        close(fd);
        unlink(probe);
        return 0;
    }
    if (errno != ENOENT) {
        fprintf(err, "%s: --save-npy '%s': %s\n", P, path, strerror(errno));
        return 2;
    }
    if (mkdir(path, 0777)) {
        fprintf(err, "%s: --save-npy '%s': cannot create the directory: %s\n", P, path, strerror(errno));
        return 2;
    }
    rmdir(path);
    return 0;
}

/* What an unknown or ambiguous long option could have meant. */
static void unknown_long(FILE *err, const char *P, const char *arg, const struct option *longopts)
{
    const char *name = arg + 2;
    const size_t len = strcspn(name, "=");
    char cands[256] = "";
    int n = 0;
    for (const struct option *o = longopts; o->name; o++)
        if (!strncmp(o->name, name, len)) {
            size_t k = strlen(cands);
            snprintf(cands + k, sizeof cands - k, "%s--%s", n ? ", " : "", o->name);
            n++;
        }
    if (n > 1 && len > 0)
        fprintf(err, "%s: option '%.*s' is ambiguous: %s (see --help)\n", P, (int)len + 2, arg, cands);
    else
        fprintf(err, "%s: unknown option '%s' (see --help)\n", P, arg);
}

int cli_parse_opts(const cli_spec_t *spec, const cli_opt_t *stage_opts, int nstage, int argc, char **argv, opts_t *o,
                   FILE *err)
{
    memset(o, 0, sizeof *o);
    o->device = DEV_AUTO;
    o->dtype = DT_F32;
    o->seed = 20261128;
    o->scale = 1.0;

    static const struct option common_opts[] = {
        { "device", required_argument, 0, OPT_DEVICE },
        { "dtype", required_argument, 0, OPT_DTYPE },
        { "iters", required_argument, 0, OPT_ITERS },
        { "warmup", required_argument, 0, OPT_WARMUP },
        { "seed", required_argument, 0, OPT_SEED },
        { "scale", required_argument, 0, OPT_SCALE },
        { "csv", required_argument, 0, OPT_CSV },
        { "save-npy", required_argument, 0, OPT_SAVE },
        { "load-npy", required_argument, 0, OPT_LOAD },
        { "sweep", no_argument, 0, OPT_SWEEP },
        { "help", no_argument, 0, OPT_HELP },
    };
    static const struct option softmax_opts[] = {
        { "rows", required_argument, 0, OPT_ROWS },
        { "cols", required_argument, 0, OPT_COLS },
    };
    static const struct option attention_opts[] = {
        { "batch", required_argument, 0, OPT_BATCH },
        { "heads", required_argument, 0, OPT_HEADS },
        { "seq", required_argument, 0, OPT_SEQ },
        { "dim", required_argument, 0, OPT_DIM },
        { "causal", no_argument, 0, OPT_CAUSAL },
        { "seq-q", required_argument, 0, OPT_SEQ_Q },
        { "seq-kv", required_argument, 0, OPT_SEQ_KV },
        { "decode", no_argument, 0, OPT_DECODE },
        { "kernel", required_argument, 0, OPT_KERNEL },
    };
    struct option longopts[48];
    size_t n = 0;
    for (size_t i = 0; i < sizeof common_opts / sizeof *common_opts; i++) longopts[n++] = common_opts[i];
    if (spec->kind == CLI_SOFTMAX)
        for (size_t i = 0; i < sizeof softmax_opts / sizeof *softmax_opts; i++) longopts[n++] = softmax_opts[i];
    else
        for (size_t i = 0; i < sizeof attention_opts / sizeof *attention_opts; i++) longopts[n++] = attention_opts[i];
    if (nstage < 0 || nstage > CLI_OPTS_MAX) {
        fprintf(err, "%s: %d stage options declared, at most %d (a bug in the stage's main.c)\n", spec->prog,
                nstage, CLI_OPTS_MAX);
        return 2;
    }
    for (int i = 0; i < nstage; i++) {
        struct option x = { stage_opts[i].name, stage_opts[i].arg ? required_argument : no_argument, 0, OPT_STAGE0 + i };
        longopts[n++] = x;
    }
    o->opts = stage_opts;
    o->nopts = nstage;
    memset(&longopts[n], 0, sizeof longopts[n]);

    const char *P = spec->prog;
    opterr = 0; /* our own messages */
    optind = 0; /* glibc: a full restart (1 would keep the position inside an earlier "-xy") */
    int c;
    long long v;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        const char *a = optarg;
        switch (c) {
        case OPT_DEVICE:
            if (!strcmp(a, "auto")) o->device = DEV_AUTO;
            else if (!strcmp(a, "cpu")) o->device = DEV_CPU;
            else if (!strcmp(a, "gpu")) o->device = DEV_GPU;
            else return bad(err, P, "--device", a, "auto, cpu or gpu");
            break;
        case OPT_DTYPE:
            if (dtype_parse(a, &o->dtype)) return bad(err, P, "--dtype", a, "fp32, fp16 or bf16");
            o->given |= GIVEN_DTYPE;
            break;
        case OPT_ROWS:
            if (cli_parse_count(a, CLI_MAX_DIM, &o->rows)) return bad(err, P, "--rows", a, "an integer from 1 to 2^31-1");
            o->given |= GIVEN_ROWS;
            break;
        case OPT_COLS:
            if (cli_parse_count(a, CLI_MAX_DIM, &o->cols)) return bad(err, P, "--cols", a, "an integer from 1 to 2^31-1");
            o->given |= GIVEN_COLS;
            break;
        case OPT_BATCH:
            if (cli_parse_count(a, 1 << 20, &o->batch)) return bad(err, P, "--batch", a, "an integer from 1 to 2^20");
            o->given |= GIVEN_BATCH;
            break;
        case OPT_HEADS:
            if (cli_parse_count(a, 1 << 16, &o->heads)) return bad(err, P, "--heads", a, "an integer from 1 to 65536");
            o->given |= GIVEN_HEADS;
            break;
        case OPT_SEQ:
            if (cli_parse_count(a, 1 << 24, &o->seq)) return bad(err, P, "--seq", a, "an integer from 1 to 2^24");
            o->given |= GIVEN_SEQ;
            break;
        case OPT_DIM:
            /* Any size here: the driver says which head dimensions the stage has. */
            if (cli_parse_count(a, CLI_MAX_DIM, &o->dim))
                return bad(err, P, "--dim", a, "a positive integer (the head dimensions a stage takes: see --help)");
            o->given |= GIVEN_DIM;
            break;
        case OPT_CAUSAL: o->causal = 1; break;
        case OPT_SEQ_Q:
            if (cli_parse_count(a, 1 << 24, &o->seq_q)) return bad(err, P, "--seq-q", a, "an integer from 1 to 2^24");
            o->given |= GIVEN_SEQ_Q;
            break;
        case OPT_SEQ_KV:
            if (cli_parse_count(a, 1 << 24, &o->seq_kv)) return bad(err, P, "--seq-kv", a, "an integer from 1 to 2^24");
            o->given |= GIVEN_SEQ_KV;
            break;
        case OPT_DECODE: o->given |= GIVEN_DECODE; break;
        case OPT_KERNEL:
            if (!*a || strspn(a, "abcdefghijklmnopqrstuvwxyz0123456789-_,") != strlen(a))
                return bad(err, P, "--kernel", a, "implementation names separated by commas (see the table)");
            o->kernels = a;
            break;
        case OPT_ITERS:
            if (cli_parse_count(a, 100000, &v)) return bad(err, P, "--iters", a, "an integer from 1 to 100000");
            o->iters = (int)v;
            o->given |= GIVEN_ITERS;
            break;
        case OPT_WARMUP:
            if (!strcmp(a, "0")) v = 0;
            else if (cli_parse_count(a, 10000, &v)) return bad(err, P, "--warmup", a, "an integer from 0 to 10000");
            o->warmup = (int)v;
            o->given |= GIVEN_WARMUP;
            break;
        case OPT_SEED:
            if (parse_seed(a, &o->seed))
                return bad(err, P, "--seed", a, "a non-negative integer below 2^64 (decimal, or hex after 0x)");
            o->given |= GIVEN_SEED;
            break;
        case OPT_SCALE: {
            char *end = NULL;
            errno = 0;
            double s = strtod(a, &end);
            if (errno || !*a || *end || !isfinite(s) || s <= 0 || s > 1e30)
                return bad(err, P, "--scale", a, "a finite number > 0");
            o->scale = s;
            o->given |= GIVEN_SCALE;
            break;
        }
        case OPT_CSV: o->csv = a; break;
        case OPT_SAVE: o->save_npy = a; break;
        case OPT_LOAD: o->load_npy = a; break;
        case OPT_SWEEP: o->sweep = 1; break;
        case OPT_HELP: usage(spec, stage_opts, nstage, stdout); return 1;
        case OPT_STAGE0: case OPT_STAGE0 + 1: case OPT_STAGE0 + 2: case OPT_STAGE0 + 3:
        case OPT_STAGE0 + 4: case OPT_STAGE0 + 5: case OPT_STAGE0 + 6: case OPT_STAGE0 + 7: {
            const cli_opt_t *d = &stage_opts[c - OPT_STAGE0];
            if (d->arg) {
                char want[64], opt[64];
                snprintf(want, sizeof want, "an integer from 1 to %lld", d->max);
                snprintf(opt, sizeof opt, "--%s", d->name);
                if (cli_parse_count(a, d->max, &o->opt_val[c - OPT_STAGE0])) return bad(err, P, opt, a, want);
            } else {
                o->opt_val[c - OPT_STAGE0] = 1;
            }
            o->opt_given |= 1u << (c - OPT_STAGE0);
            break;
        }
        case ':':
            fprintf(err, "%s: option '%s' needs a value (see --help)\n", P, argv[optind - 1]);
            return 2;
        default:
            /* glibc's optopt: the letter of an unknown short option ("-xy":
             * argv[optind - 1] would be the program itself), the value of a
             * long option given a value it does not take, 0 otherwise. */
            if (optopt >= OPT_DEVICE)
                fprintf(err, "%s: option '%.*s' takes no value (see --help)\n", P,
                        (int)strcspn(argv[optind - 1], "="), argv[optind - 1]);
            else if (optopt > 0)
                fprintf(err, "%s: unknown option '-%c' (see --help)\n", P, optopt);
            else if (!strncmp(argv[optind - 1], "--", 2))
                unknown_long(err, P, argv[optind - 1], longopts);
            else
                fprintf(err, "%s: unknown option '%s' (see --help)\n", P, argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(err, "%s: unexpected argument '%s' (see --help)\n", P, argv[optind]);
        return 2;
    }
    if (o->sweep && o->load_npy) {
        fprintf(err, "%s: --sweep and --load-npy cannot be combined: the file fixes the shape\n", P);
        return 2;
    }
    if ((o->given & GIVEN_SEQ) && (o->given & (GIVEN_SEQ_Q | GIVEN_SEQ_KV | GIVEN_DECODE))) {
        fprintf(err, "%s: --seq sets both lengths; use either --seq or --seq-q/--seq-kv/--decode\n", P);
        return 2;
    }
    if ((o->given & GIVEN_DECODE) && (o->given & GIVEN_SEQ_Q)) {
        fprintf(err, "%s: --decode means --seq-q 1; give one of them, not both (--seq-q %lld was given)\n", P,
                o->seq_q);
        return 2;
    }
    if (o->given & GIVEN_DECODE) {
        o->seq_q = 1;
        o->given |= GIVEN_SEQ_Q; /* what a driver reading GIVEN_SEQ_Q alone expects */
    }
    if (o->load_npy && (o->given & (GIVEN_SCALE | GIVEN_SEED))) {
        fprintf(err, "%s: --%s describes the generated input, which --load-npy replaces: give one or the other\n",
                P, (o->given & GIVEN_SCALE) ? "scale" : "seed");
        return 2;
    }
    if (o->sweep && o->save_npy) {
        fprintf(err, "%s: --sweep and --save-npy cannot be combined: pick one shape to save\n", P);
        return 2;
    }
    /* The paths, before any work: a bad one must not cost a whole run. */
    if (o->load_npy && check_path_text(err, P, "--load-npy", o->load_npy, "directory")) return 2;
    if (o->save_npy && check_path_text(err, P, "--save-npy", o->save_npy, "directory")) return 2;
    if (o->csv && check_path_text(err, P, "--csv", o->csv, "file")) return 2;
    if (o->csv && check_csv(err, P, o->csv)) return 2;
    if (o->save_npy && check_save_dir(err, P, o->save_npy)) return 2;
    return 0;
}

int cli_resolve_device(const char *prog, opts_t *o, FILE *err)
{
    if (o->device == DEV_CPU) return 0;
    int ok = gpu_available();
    if (o->device == DEV_GPU && !ok) {
        fprintf(err, "%s: --device gpu, but no GPU can be used: %s\n", prog, gpu_unavailable_reason());
        return 2;
    }
    o->device = ok ? DEV_GPU : DEV_CPU;
    return 0;
}

int cli_kernel_selected(const char *list, const char *name)
{
    if (!list) return 1;
    const size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        const size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, name, n)) return 1;
        p += len + (e != NULL);
    }
    return 0;
}
