#include "report.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gpu.h"

static void read_cmd(const char *cmd, char *out, size_t n)
{
    out[0] = 0;
    FILE *p = popen(cmd, "r");
    if (!p) return;
    if (fgets(out, (int)n, p)) out[strcspn(out, "\r\n")] = 0;
    pclose(p);
}

/* The directory of the running program, quoted for the shell ('...', with
 * each ' written '\''), or "" when /proc/self/exe cannot be read. The commit
 * in the stamp is the program's own tree's, not the current directory's: a
 * run from elsewhere (a bench directory, another checkout) must not stamp a
 * commit that did not build the program. */
static void exe_dir_quoted(char *out, size_t n)
{
    char exe[4096];
    out[0] = 0;
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k <= 0) return;
    exe[k] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return;
    slash[slash == exe] = 0; /* "/prog" -> "/" */
    size_t j = 0;
    out[j++] = '\'';
    for (const char *c = exe; *c; c++) {
        if (j + 6 >= n) { out[0] = 0; return; }
        if (*c == '\'') { memcpy(out + j, "'\\''", 4); j += 4; }
        else out[j++] = *c;
    }
    out[j++] = '\'';
    out[j] = 0;
}

void env_stamp_fill(env_stamp_t *e, int gpu)
{
    memset(e, 0, sizeof *e);
    if (gpu) {
        gpu_info_t g;
        gpu_info(&g);
        snprintf(e->device, sizeof e->device, "%s", g.name);
        snprintf(e->driver, sizeof e->driver, "%d.%d", g.driver_version / 1000, (g.driver_version % 1000) / 10);
        snprintf(e->runtime, sizeof e->runtime, "%d.%d", g.runtime_version / 1000, (g.runtime_version % 1000) / 10);
    } else {
        char model[200] = "";
        FILE *f = fopen("/proc/cpuinfo", "r");
        char line[512];
        while (f && fgets(line, sizeof line, f)) {
            if (!strncmp(line, "model name", 10)) {
                char *c = strchr(line, ':');
                if (c) {
                    c++;
                    while (*c == ' ') c++;
                    snprintf(model, sizeof model, "%s", c);
                    model[strcspn(model, "\r\n")] = 0;
                }
                break;
            }
        }
        if (f) fclose(f);
        snprintf(e->device, sizeof e->device, "CPU %s", model[0] ? model : "(unknown model)");
        snprintf(e->driver, sizeof e->driver, "-");
        snprintf(e->runtime, sizeof e->runtime, "-");
    }
    /* STF_COMMIT: for runs from a copy of the tree without .git (the GPU machine) */
    char dir[16400], cmd[16600], dirty[8] = "";
    if (getenv("STF_COMMIT")) {
        snprintf(e->commit, sizeof e->commit, "%s", getenv("STF_COMMIT"));
    } else {
        exe_dir_quoted(dir, sizeof dir);
        if (dir[0]) {
            snprintf(cmd, sizeof cmd, "git -C %s rev-parse --short HEAD 2>/dev/null", dir);
            read_cmd(cmd, e->commit, sizeof e->commit);
            snprintf(cmd, sizeof cmd, "git -C %s status --porcelain --untracked-files=no 2>/dev/null | head -c 1", dir);
            if (e->commit[0]) read_cmd(cmd, dirty, sizeof dirty);
        }
    }
    if (!e->commit[0]) snprintf(e->commit, sizeof e->commit, "unknown");
    if (dirty[0]) strncat(e->commit, "+dirty", sizeof e->commit - strlen(e->commit) - 1);
    time_t t = time(NULL);
    strftime(e->date, sizeof e->date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    /* commas would break the CSV */
    for (char *c = e->device; *c; c++) if (*c == ',') *c = ';';
}

void print_run_header(const char *prog, const char *summary, int gpu, env_stamp_t *env)
{
    env_stamp_fill(env, gpu);
    printf("%s: %s\n", prog, summary);
    printf("device: %s", env->device);
    if (gpu) {
        gpu_info_t g;
        gpu_info(&g);
        printf(" (sm_%d%d, %d SMs, %.0f MiB L2, %.0f GiB, %zu KiB shared memory per block at most; driver %s, runtime %s)",
               g.cc_major, g.cc_minor, g.sm_count, g.l2_bytes / 1048576.0, g.total_mem / 1073741824.0,
               g.smem_optin / 1024, env->driver, env->runtime);
    }
    printf("\n");
}

void report_init(report_t *r, const report_col_t *cols, int ncols)
{
    memset(r, 0, sizeof *r);
    r->cols = cols;
    r->ncols = ncols < REPORT_MAX_COLS ? ncols : REPORT_MAX_COLS;
}

int report_add_row(report_t *r)
{
    if (r->nrows >= REPORT_MAX_ROWS) {
        fprintf(stderr, "report: more than %d rows in one table; the rest are dropped\n", REPORT_MAX_ROWS);
        return -1;
    }
    for (int c = 0; c < r->ncols; c++) r->cells[r->nrows][c][0] = 0;
    return r->nrows++;
}

void report_set(report_t *r, int row, const char *key, const char *f, ...)
{
    int c = 0;
    while (c < r->ncols && strcmp(r->cols[c].key, key)) c++;
    if (c == r->ncols) {
        fprintf(stderr, "report: no column '%s' in this table (a bug in the caller)\n", key);
        abort();
    }
    if (row < 0 || row >= r->nrows) return;
    va_list ap;
    va_start(ap, f);
    vsnprintf(r->cells[row][c], REPORT_CELL, f, ap);
    va_end(ap);
}

const char *fmt(const char *f, ...)
{
    static char buf[64][REPORT_CELL]; /* more than one report_row takes */
    static int k;
    char *b = buf[k++ & 63];
    va_list ap;
    va_start(ap, f);
    vsnprintf(b, REPORT_CELL, f, ap);
    va_end(ap);
    return b;
}

/* Columns of width 0 go to the CSV only. */
void report_print(const report_t *r, FILE *f)
{
    for (int c = 0; c < r->ncols; c++)
        if (r->cols[c].width) fprintf(f, "%*s ", r->cols[c].width, r->cols[c].title);
    fputc('\n', f);
    for (int c = 0; c < r->ncols; c++) {
        for (int i = 0; i < r->cols[c].width; i++) fputc('-', f);
        if (r->cols[c].width) fputc(' ', f);
    }
    fputc('\n', f);
    for (int i = 0; i < r->nrows; i++) {
        for (int c = 0; c < r->ncols; c++)
            if (r->cols[c].width) fprintf(f, "%*s ", r->cols[c].width, r->cells[i][c]);
        fputc('\n', f);
    }
}

/* The environment stamp's columns, after the table's own. */
static const char *const STAMP_KEYS[] = { "device_name", "driver", "runtime", "commit", "date" };
#define NSTAMP ((int)(sizeof STAMP_KEYS / sizeof *STAMP_KEYS))

int report_csv_check(const char *path, const report_col_t *cols, int ncols, FILE *err)
{
    if (ncols > REPORT_MAX_COLS) ncols = REPORT_MAX_COLS; /* as report_init */
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT) return 0;
        fprintf(err, "error: --csv '%s': %s\n", path, strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        fprintf(err, "error: --csv '%s' is a directory; give a file name\n", path);
        return -1;
    }
    if (!S_ISREG(st.st_mode) || st.st_size == 0) return 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(err, "error: --csv '%s': cannot read it to check its header: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len = getline(&line, &cap, f);
    fclose(f);
    if (len < 0) {
        free(line);
        fprintf(err, "error: --csv '%s': cannot read its header\n", path);
        return -1;
    }
    line[strcspn(line, "\r\n")] = 0;
    /* Field by field: the first column where the file and this table differ. */
    const char *p = line; /* the current field in the file; NULL past the last */
    int rc = 0;
    for (int col = 0;; col++) {
        const char *want = col < ncols ? cols[col].key : col < ncols + NSTAMP ? STAMP_KEYS[col - ncols] : NULL;
        const size_t flen = p ? strcspn(p, ",") : 0;
        if (!want && !p) break;
        if (!want || !p || strlen(want) != flen || strncmp(p, want, flen)) {
            char have[80];
            if (p) snprintf(have, sizeof have, "'%.*s'", (int)(flen > 60 ? 60 : flen), p);
            else snprintf(have, sizeof have, "absent");
            fprintf(err, "error: --csv '%s' holds another table: column %d is %s there, %s%s%s in this program's "
                         "rows; use another file\n",
                    path, col + 1, have, want ? "'" : "", want ? want : "absent", want ? "'" : "");
            rc = -1;
            break;
        }
        p = p[flen] == ',' ? p + flen + 1 : NULL;
    }
    free(line);
    return rc;
}

void report_csv_cell(FILE *f, const char *cell, char sep)
{
    /* RFC 4180: a field holding a comma, a double quote or a line break is
     * enclosed in double quotes, and a quote inside it is written twice. */
    if (strpbrk(cell, ",\"\r\n")) {
        fputc('"', f);
        for (const char *c = cell; *c; c++) {
            if (*c == '"') fputc('"', f);
            fputc(*c, f);
        }
        fputc('"', f);
    } else {
        fputs(cell, f);
    }
    fputc(sep, f);
}

int report_csv_append(const report_t *r, const char *path, const env_stamp_t *e)
{
    if (report_csv_check(path, r->cols, r->ncols, stderr)) return -1;
    struct stat st;
    int fresh = stat(path, &st) != 0 || st.st_size == 0;
    FILE *f = fopen(path, "a");
    if (!f) {
        fprintf(stderr, "error: --csv '%s': cannot append: %s\n", path, strerror(errno));
        return -1;
    }
    if (fresh) {
        for (int c = 0; c < r->ncols; c++) fprintf(f, "%s,", r->cols[c].key);
        for (int c = 0; c < NSTAMP; c++) fprintf(f, "%s%c", STAMP_KEYS[c], c + 1 < NSTAMP ? ',' : '\n');
    }
    for (int i = 0; i < r->nrows; i++) {
        for (int c = 0; c < r->ncols; c++) report_csv_cell(f, r->cells[i][c], ',');
        const char *stamp[NSTAMP] = { e->device, e->driver, e->runtime, e->commit, e->date };
        for (int c = 0; c < NSTAMP; c++) report_csv_cell(f, stamp[c], c + 1 < NSTAMP ? ',' : '\n');
    }
    if (fclose(f)) {
        fprintf(stderr, "error: --csv '%s': write failed: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}
