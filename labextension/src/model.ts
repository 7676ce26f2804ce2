import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { requestAPI } from './request';
import {
  ICost,
  IModels,
  IResources,
  IRun,
  IRunsPage,
  ISchedules,
  ISummary
} from './types';

/** Poll intervals (ms): quick while runs are live, slow when nothing runs. */
const LIVE_INTERVAL = 2000;
const IDLE_INTERVAL = 4000;
const MAX_BACKOFF = 60000;
export const PAGE_SIZE = 50;
/** The most rows the list keeps (the server's page limit); filter to see older ones. */
export const MAX_ROWS = 500;

export interface IFilters {
  experiment: string;
  status: string;
  /** '' this home's runs; 'all' or an owner's name: teammates' runs too. */
  owner: string;
  project: string;
}

/**
 * The runs the sidebar shows, and the live summary (status bar). Polls politely:
 * nothing while the page is hidden (`standby: 'when-hidden'`) or the sidebar is
 * closed (runs), exponential backoff after errors, slower when nothing runs.
 */
export class RunsModel {
  constructor() {
    this._runsPoll = new Poll({
      factory: () => this._fetchRuns(),
      frequency: { interval: LIVE_INTERVAL, backoff: true, max: MAX_BACKOFF },
      standby: () => this._paused || 'when-hidden',
      name: 'runctl:runs'
    });
    this._summaryPoll = new Poll({
      factory: () => this._fetchSummary(),
      frequency: { interval: 5000, backoff: true, max: MAX_BACKOFF },
      standby: () => !this._paused || 'when-hidden',
      name: 'runctl:summary'
    });
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }
  get runs(): IRun[] {
    return this._runs;
  }
  get summary(): ISummary | null {
    return this._summary;
  }
  get hasMore(): boolean {
    return this._nextOffset !== null && PAGE_SIZE * this._pages < MAX_ROWS;
  }
  get error(): string | null {
    return this._error;
  }
  get loaded(): boolean {
    return this._loaded;
  }
  get filters(): IFilters {
    return this._filters;
  }

  /** The sidebar is shown (runs polled) or hidden (only the summary is polled). */
  set paused(value: boolean) {
    if (this._paused === value) {
      return;
    }
    this._paused = value;
    if (!value) {
      void this._runsPoll.refresh();
    } else {
      void this._summaryPoll.refresh();
    }
  }

  setFilters(filters: IFilters): void {
    this._filters = filters;
    this._pages = 1;
    this._runs = [];
    this._loaded = false;
    this._changed.emit();
    void this._runsPoll.refresh();
  }

  loadMore(): void {
    this._pages += 1;
    void this._runsPoll.refresh();
  }

  refresh(): Promise<void> {
    return this._runsPoll.refresh();
  }

  async stop(runId: string, force = false): Promise<void> {
    await requestAPI(`runs/${encodeURIComponent(runId)}/stop`, {
      method: 'POST',
      body: JSON.stringify({ force })
    });
    this._stopping.add(runId);
    this._changed.emit();
    await this._runsPoll.refresh();
  }

  /** A Stop was asked from here and the run has not ended yet. */
  isStopping(runId: string): boolean {
    return this._stopping.has(runId);
  }

  async openRecord(runId: string): Promise<string> {
    const answer = await requestAPI<{ path: string }>(
      `runs/${encodeURIComponent(runId)}/open-record`,
      { method: 'POST', body: '{}' }
    );
    return answer.path;
  }

  resources(): Promise<IResources> {
    return requestAPI<IResources>('resources');
  }

  cost(): Promise<ICost> {
    return requestAPI<ICost>('cost');
  }

  models(): Promise<IModels> {
    return requestAPI<IModels>('models');
  }

  schedules(): Promise<ISchedules> {
    return requestAPI<ISchedules>('schedules');
  }

  dispose(): void {
    this._runsPoll.dispose();
    this._summaryPoll.dispose();
  }

  private async _fetchRuns(): Promise<void> {
    const params = new URLSearchParams({
      limit: String(Math.min(PAGE_SIZE * this._pages, MAX_ROWS))
    });
    if (this._filters.experiment) {
      params.set('experiment', this._filters.experiment);
    }
    if (this._filters.status) {
      params.set('status', this._filters.status);
    }
    if (this._filters.owner) {
      params.set('owner', this._filters.owner);
    }
    if (this._filters.project) {
      params.set('project', this._filters.project);
    }
    const filters = this._filters;
    try {
      const page = await requestAPI<IRunsPage>(`runs?${params.toString()}`);
      if (filters !== this._filters) {
        return; // the filters changed meanwhile: a newer fetch follows
      }
      this._runs = page.runs;
      for (const run of page.runs) {
        if (!run.active) {
          this._stopping.delete(run.id);
        }
      }
      this._nextOffset = page.next_offset;
      this._summary = page.summary;
      this._error = null;
      this._loaded = true;
      this._setInterval(page.summary.active > 0);
    } catch (error) {
      this._error = String((error as Error).message || error);
      this._changed.emit();
      throw error; // the poll backs off
    }
    this._changed.emit();
  }

  private async _fetchSummary(): Promise<void> {
    this._summary = await requestAPI<ISummary>('summary');
    this._changed.emit();
  }

  private _setInterval(live: boolean): void {
    const interval = live ? LIVE_INTERVAL : IDLE_INTERVAL;
    if (this._runsPoll.frequency.interval !== interval) {
      this._runsPoll.frequency = { interval, backoff: true, max: MAX_BACKOFF };
    }
  }

  private _changed = new Signal<this, void>(this);
  private _runs: IRun[] = [];
  private _summary: ISummary | null = null;
  private _nextOffset: number | null = null;
  private _error: string | null = null;
  private _loaded = false;
  private _pages = 1;
  private _stopping = new Set<string>();
  private _paused = true;
  private _filters: IFilters = {
    experiment: '',
    status: '',
    owner: '',
    project: ''
  };
  private _runsPoll: Poll;
  private _summaryPoll: Poll;
}
