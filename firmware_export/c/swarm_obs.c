/* swarm_obs.c - see swarm_obs.h. */
#include <math.h>

#include "swarm_obs.h"

#define K SWARM_POLICY_OBS_NEIGHBOURS_K

void swarm_obs_build(const swarm_own_state_t *own, const float goal[3],
                     const swarm_peer_state_t *peers, int n_peers, float range_m,
                     float obs[SWARM_POLICY_OBS_DIM])
{
    for (int i = 0; i < SWARM_POLICY_OBS_DIM; ++i) {
        obs[i] = 0.0f;
    }
    for (int c = 0; c < 3; ++c) {
        obs[SWARM_POLICY_OBS_GOAL_ERROR_START + c] = own->pos[c] - goal[c];
        obs[SWARM_POLICY_OBS_VELOCITY_START + c] = own->vel[c];
        obs[SWARM_POLICY_OBS_BODY_RATES_START + c] = own->omega[c];
    }
    float x = own->quat[0], y = own->quat[1], z = own->quat[2], w = own->quat[3];
    const float norm = sqrtf(x * x + y * y + z * z + w * w);
    if (norm > 0.0f) {
        x /= norm;
        y /= norm;
        z /= norm;
        w /= norm;
    } else {
        w = 1.0f;
    }
    float *r = &obs[SWARM_POLICY_OBS_ROTATION_START];
    r[0] = 1.0f - 2.0f * (y * y + z * z);
    r[1] = 2.0f * (x * y - z * w);
    r[2] = 2.0f * (x * z + y * w);
    r[3] = 2.0f * (x * y + z * w);
    r[4] = 1.0f - 2.0f * (x * x + z * z);
    r[5] = 2.0f * (y * z - x * w);
    r[6] = 2.0f * (x * z - y * w);
    r[7] = 2.0f * (y * z + x * w);
    r[8] = 1.0f - 2.0f * (x * x + y * y);
    obs[SWARM_POLICY_OBS_HEIGHT_START] = own->pos[2];
#if K > 0
    /* K nearest within range, nearest first; a tie keeps the earlier peer first (as the
     * simulator's stable sort does). */
    float best_d[K];
    int best_j[K];
    for (int s = 0; s < K; ++s) {
        best_d[s] = INFINITY;
        best_j[s] = -1;
    }
    for (int j = 0; j < n_peers; ++j) {
        const float dx = peers[j].pos[0] - own->pos[0];
        const float dy = peers[j].pos[1] - own->pos[1];
        const float dz = peers[j].pos[2] - own->pos[2];
        const float d = sqrtf(dx * dx + dy * dy + dz * dz);
        if (!(d <= range_m) || d >= best_d[K - 1]) {
            continue;
        }
        int slot = K - 1;
        while (slot > 0 && best_d[slot - 1] > d) {
            best_d[slot] = best_d[slot - 1];
            best_j[slot] = best_j[slot - 1];
            --slot;
        }
        best_d[slot] = d;
        best_j[slot] = j;
    }
    for (int s = 0; s < K; ++s) {
        const int j = best_j[s];
        if (j < 0) {
            continue;
        }
        float *f = &obs[SWARM_POLICY_OBS_NEIGHBOURS_START + 6 * s];
        for (int c = 0; c < 3; ++c) {
            f[c] = peers[j].pos[c] - own->pos[c];
            f[3 + c] = peers[j].vel[c] - own->vel[c];
        }
        obs[SWARM_POLICY_OBS_NEIGHBOUR_MASK_START + s] = 1.0f;
    }
#else
    (void)peers;
    (void)n_peers;
    (void)range_m;
#endif
    for (int c = 0; c < SWARM_POLICY_OBS_OBSTACLES_SIZE; ++c) {
        obs[SWARM_POLICY_OBS_OBSTACLES_START + c] = SWARM_OBS_OBSTACLE_RANGE_M;
    }
}

void swarm_peers_reset(swarm_peer_tracker_t *tracker)
{
    for (int i = 0; i < SWARM_OBS_MAX_PEERS; ++i) {
        tracker->track[i].id = 0;
    }
}

void swarm_peers_update(swarm_peer_tracker_t *tracker, uint8_t id, uint32_t stamp_ms,
                        const float pos[3], float tau_s)
{
    if (id == 0) {
        return;
    }
    swarm_peer_track_t *t = 0;
    swarm_peer_track_t *oldest = &tracker->track[0];
    for (int i = 0; i < SWARM_OBS_MAX_PEERS && t == 0; ++i) {
        swarm_peer_track_t *c = &tracker->track[i];
        if (c->id == id) {
            t = c;
        } else if (oldest->id != 0 && (c->id == 0 || c->stamp_ms < oldest->stamp_ms)) {
            oldest = c;
        }
    }
    if (t == 0) {
        t = oldest;
        t->id = 0;
    }
    const uint32_t dt_ms = stamp_ms - t->stamp_ms;
    if (t->id == id && dt_ms == 0u) {
        return; /* the same sample again */
    }
    if (t->id == id && dt_ms <= SWARM_PEER_MAX_GAP_MS) {
        const float dt = (float)dt_ms * 1e-3f;
        const float alpha = dt / (tau_s > 0.0f ? tau_s + dt : dt);
        for (int c = 0; c < 3; ++c) {
            const float raw = (pos[c] - t->pos[c]) / dt;
            t->vel[c] += alpha * (raw - t->vel[c]);
        }
    } else {
        for (int c = 0; c < 3; ++c) {
            t->vel[c] = 0.0f;
        }
    }
    t->id = id;
    t->stamp_ms = stamp_ms;
    for (int c = 0; c < 3; ++c) {
        t->pos[c] = pos[c];
    }
}

int swarm_peers_collect(swarm_peer_tracker_t *tracker, uint32_t now_ms, uint32_t max_age_ms,
                        swarm_peer_state_t *out, int max_out)
{
    int n = 0;
    for (int i = 0; i < SWARM_OBS_MAX_PEERS; ++i) {
        swarm_peer_track_t *t = &tracker->track[i];
        if (t->id == 0) {
            continue;
        }
        const int32_t age_ms = (int32_t)(now_ms - t->stamp_ms); /* < 0: stamped after now */
        if (age_ms > (int32_t)max_age_ms) {
            t->id = 0;
            continue;
        }
        if (n < max_out) {
            for (int c = 0; c < 3; ++c) {
                out[n].pos[c] = t->pos[c];
                out[n].vel[c] = t->vel[c];
            }
            ++n;
        }
    }
    return n;
}
