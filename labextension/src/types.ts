/** What /runctl/api/ answers (runctl_jupyter/server/api.py). */

export interface ISpark {
  metric: string;
  values: (number | null)[];
}

export interface IRun {
  id: string;
  name: string | null;
  experiment: string | null;
  project: string | null;
  owner: string | null;
  /** A teammate's run pulled from the team store (docs/teams.md): its team. */
  team: string | null;
  backend: string | null;
  status: string;
  reason: string | null;
  created: number | null;
  started: number | null;
  ended: number | null;
  duration: number | null;
  attempt: number;
  last_step: number | null;
  total: number | null;
  cost: number;
  rate: number | null;
  metrics: { [key: string]: number | null };
  active: boolean;
  has_record: boolean;
  error: { type: string; message: string } | null;
  spark?: ISpark | null;
}

export interface ISummary {
  running: number;
  active: number;
  rate: number;
}

export interface IRunsPage {
  runs: IRun[];
  offset: number;
  limit: number;
  next_offset: number | null;
  summary: ISummary;
  /** c.Runctl.team of the server, null without one. */
  team: string | null;
}

export interface IResource {
  kind: string;
  id: string;
  region: string;
  state: string;
  detail: string;
  age_h: number | null;
  owner: string;
  run: string;
  run_status: string | null;
  kept: boolean;
  rate: number | null;
}

export interface IResources {
  resources: IResource[];
  note: string | null;
  rate: number;
  running: number;
}

export interface ICost {
  total: number;
  last_24h: number;
  runs: number;
  by_backend: { [backend: string]: number };
  by_experiment: { [experiment: string]: number };
  rate: number;
  running: number;
}

export interface IModelVersion {
  version: number;
  run_id: string | null;
  created: number | null;
  bytes: number | null;
  sha256: string;
  metrics: { [name: string]: number | null };
  aliases: string[];
  source: string | null;
}

export interface IModel {
  name: string;
  aliases: { [alias: string]: number };
  versions: IModelVersion[];
}

export interface IModels {
  models: IModel[];
}

export interface ISchedule {
  name: string;
  target: string;
  when: string;
  next: string | null;
  last_run: string | null;
  status: string | null;
  enabled: string;
  running: boolean | null;
  note: string;
}

export interface ISchedules {
  schedules: ISchedule[];
}
