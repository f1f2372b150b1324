/* One table on stdout per run, and the same rows appended to a CSV file with
 * an environment stamp (device, driver and runtime versions, git commit, date),
 * so every figure in the notes can be traced to the run that produced it. */
#ifndef STF_REPORT_H
#define STF_REPORT_H

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define REPORT_MAX_COLS 40
#define REPORT_MAX_ROWS 64
#define REPORT_CELL 48

typedef struct {
    const char *key;   /* CSV column name */
    const char *title; /* table header */
    int width;         /* 0: CSV only */
} report_col_t;

typedef struct {
    char device[256];
    char driver[32];
    char runtime[32];
    char commit[48];
    char date[32];
} env_stamp_t;

typedef struct {
    const report_col_t *cols;
    int ncols;
    int nrows;
    char cells[REPORT_MAX_ROWS][REPORT_MAX_COLS][REPORT_CELL];
} report_t;

/* device_is_gpu: fill device/driver/runtime from the GPU, else from the CPU. */
void env_stamp_fill(env_stamp_t *e, int device_is_gpu);
/* The first lines of every stage's output: program, summary, the device (with
 * SMs, L2, driver and runtime on a GPU). Fills env. */
void print_run_header(const char *prog, const char *summary, int device_is_gpu, env_stamp_t *env);
void report_init(report_t *r, const report_col_t *cols, int ncols);
/* Adds a row of empty cells and returns its index (-1 when the table is full:
 * report_set then ignores it). Cells are set by column name with report_set;
 * a name that is not a column is a programming error: the message names it
 * and the program aborts, so a misspelt key cannot silently drop a figure. */
int report_add_row(report_t *r);
void report_set(report_t *r, int row, const char *key, const char *f, ...) __attribute__((format(printf, 4, 5)));
/* printf-style helper that returns a static rotating buffer (64 slots: enough for every cell of one row). */
const char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
void report_print(const report_t *r, FILE *f);
/* One CSV file holds one table layout. Returns 0 when path does not exist, is
 * empty (or is not a regular file: /dev/stdout), or its first line equals the
 * header report_csv_append writes for these columns; otherwise prints one line
 * on err naming the file and the first differing column, and returns -1.
 * Call it before the run, so a wrong --csv fails in a second, not after it. */
int report_csv_check(const char *path, const report_col_t *cols, int ncols, FILE *err);
/* Appends the rows to path (writing the header first when the file is new or
 * empty). Refuses, appending nothing, a file whose header is another layout
 * (report_csv_check). Returns 0, or -1 after printing why. */
/* Writes one CSV field and sep, quoted as RFC 4180 asks when it holds a
 * comma, a double quote or a line break ("yes, 63 excused"). */
void report_csv_cell(FILE *f, const char *cell, char sep);
int report_csv_append(const report_t *r, const char *path, const env_stamp_t *e);

#ifdef __cplusplus
}
#endif

#endif
