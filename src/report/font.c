/* font.c: a 3x5 pixel font for the figure's labels (timesteps and scores), drawn by pixel
 * replication at an integer scale. Only the characters that labels and printf("%g") produce. */
#include "report/report_internal.h"

#include <string.h>

typedef struct {
    char c;
    const char *rows[REPORT_FONT_H]; /* '#' = ink, left to right */
} Glyph;

static const Glyph GLYPHS[] = {
    {'0', {"###", "#.#", "#.#", "#.#", "###"}}, {'1', {".#.", "##.", ".#.", ".#.", "###"}},
    {'2', {"###", "..#", "###", "#..", "###"}}, {'3', {"###", "..#", "###", "..#", "###"}},
    {'4', {"#.#", "#.#", "###", "..#", "..#"}}, {'5', {"###", "#..", "###", "..#", "###"}},
    {'6', {"###", "#..", "###", "#.#", "###"}}, {'7', {"###", "..#", "..#", "..#", "..#"}},
    {'8', {"###", "#.#", "###", "#.#", "###"}}, {'9', {"###", "#.#", "###", "..#", "###"}},
    {'.', {"...", "...", "...", "...", ".#."}}, {'-', {"...", "...", "###", "...", "..."}},
    {'+', {"...", ".#.", "###", ".#.", "..."}}, {'=', {"...", "###", "...", "###", "..."}},
    {'e', {"###", "#..", "###", "#..", "###"}}, {'t', {".#.", "###", ".#.", ".#.", ".##"}},
    {'f', {".##", ".#.", "###", ".#.", ".#."}}, {'i', {".#.", "...", ".#.", ".#.", ".#."}},
    {'n', {"...", "##.", "#.#", "#.#", "#.#"}}, {'a', {"...", ".##", "#.#", "#.#", ".##"}},
    {'l', {"#..", "#..", "#..", "#..", ".##"}},
};

static const Glyph *glyph(char c) {
    for (size_t i = 0; i < sizeof GLYPHS / sizeof GLYPHS[0]; i++)
        if (GLYPHS[i].c == c) return &GLYPHS[i];
    return NULL;
}

int report_font_width(const char *s, int k) {
    int n = (int)strlen(s);
    return n == 0 ? 0 : (n * REPORT_FONT_ADVANCE - (REPORT_FONT_ADVANCE - REPORT_FONT_W)) * k;
}

void report_font_draw(uint8_t *rgb, int width, int height, int x, int y, int clip_x0, int clip_x1,
                      const char *s, int k, const uint8_t color[3]) {
    if (clip_x0 < 0) clip_x0 = 0;
    if (clip_x1 > width) clip_x1 = width;
    for (; *s; s++, x += REPORT_FONT_ADVANCE * k) {
        const Glyph *g = glyph(*s);
        if (!g) continue;
        for (int r = 0; r < REPORT_FONT_H; r++)
            for (int c = 0; c < REPORT_FONT_W; c++) {
                if (g->rows[r][c] != '#') continue;
                for (int dy = 0; dy < k; dy++)
                    for (int dx = 0; dx < k; dx++) {
                        int px = x + c * k + dx, py = y + r * k + dy;
                        if (px < clip_x0 || px >= clip_x1 || py < 0 || py >= height) continue;
                        memcpy(rgb + ((size_t)py * (size_t)width + (size_t)px) * 3, color, 3);
                    }
            }
    }
}
